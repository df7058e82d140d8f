"""Settings read once from the environment (OMNIROUTE_*)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import msgspec
import platformdirs

DEFAULT_POOL_MAX = 8
"""Connections per service process. Few on purpose: at the database, more connections than
a few per core only queue in the kernel's run queue instead of the pool's. On the 10M
network (2 cores, two workers, 64 clients holding and releasing), in one run of
`bench.http --pool 64 8`, 8 per process instead of 64 took the change feed's
commit-to-delivery p99 from 62 to 30 ms, with holds at 584 pairs/s against 539
(README, "Pool sizing")."""


class Settings(msgspec.Struct, frozen=True):
    database_url: str | None
    data_dir: Path
    bootstrap_admin_key: str | None
    pool_min: int
    pool_max: int
    log_level: str
    scheduler: bool = True
    expiry_sweep_seconds: float = 2.0
    idempotency_hours: float = 24.0
    routing_config: Path | None = None
    defer_ship_orders: bool = False
    routing_run_minutes: float = 15.0
    routing_run_seconds: float = 30.0
    rebalancing_cron: str | None = "0 3 * * *"
    read_database_url: str | None = None
    read_max_lag_seconds: float = 1.0
    key_cache_seconds: float = 5.0
    rate_limit_per_second: float = 0.0
    rate_limit_burst: int = 0
    events_retention_hours: float = 72.0
    events_publish_ms: float = 5.0
    events_keepalive_seconds: float = 15.0
    availability_cache_skus: int = 100_000

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        data_dir = env.get("OMNIROUTE_DATA_DIR") or platformdirs.user_data_dir("omniroute")
        rate = _number(env, "OMNIROUTE_RATE_LIMIT_PER_SECOND", "0", high=1e6)
        # A burst of one second's worth unless set; a limit needs room for at least one request.
        burst = int(_number(env, "OMNIROUTE_RATE_LIMIT_BURST", str(math.ceil(rate)), high=1e9, integer=True))
        if rate > 0 and burst < 1:
            raise ValueError("OMNIROUTE_RATE_LIMIT_BURST must be at least 1 when a rate limit is set")
        return cls(
            database_url=env.get("OMNIROUTE_DATABASE_URL") or None,
            data_dir=Path(data_dir).expanduser().resolve(),
            bootstrap_admin_key=env.get("OMNIROUTE_BOOTSTRAP_ADMIN_KEY") or None,
            pool_min=int(env.get("OMNIROUTE_POOL_MIN", "2")),
            pool_max=int(env.get("OMNIROUTE_POOL_MAX", str(DEFAULT_POOL_MAX))),
            log_level=env.get("OMNIROUTE_LOG_LEVEL", "INFO").upper(),
            scheduler=env.get("OMNIROUTE_SCHEDULER", "on").lower() not in ("off", "0", "false", "no"),
            expiry_sweep_seconds=float(env.get("OMNIROUTE_EXPIRY_SWEEP_SECONDS", "2")),
            idempotency_hours=float(env.get("OMNIROUTE_IDEMPOTENCY_HOURS", "24")),
            routing_config=Path(env["OMNIROUTE_ROUTING_CONFIG"]) if env.get("OMNIROUTE_ROUTING_CONFIG") else None,
            defer_ship_orders=_flag(env.get("OMNIROUTE_DEFER_SHIP_ORDERS", "off")),
            routing_run_minutes=float(env.get("OMNIROUTE_ROUTING_RUN_MINUTES", "15")),
            routing_run_seconds=float(env.get("OMNIROUTE_ROUTING_RUN_SECONDS", "30")),
            rebalancing_cron=_cron(env.get("OMNIROUTE_REBALANCING_CRON", "0 3 * * *")),
            read_database_url=env.get("OMNIROUTE_READ_DATABASE_URL") or None,
            read_max_lag_seconds=float(env.get("OMNIROUTE_READ_MAX_LAG_SECONDS", "1")),
            key_cache_seconds=_number(env, "OMNIROUTE_KEY_CACHE_SECONDS", "5", high=60),
            rate_limit_per_second=rate,
            rate_limit_burst=burst,
            events_retention_hours=_positive(env, "OMNIROUTE_EVENTS_RETENTION_HOURS", "72"),
            events_publish_ms=_positive(env, "OMNIROUTE_EVENTS_PUBLISH_MS", "5"),
            events_keepalive_seconds=_positive(env, "OMNIROUTE_EVENTS_KEEPALIVE_SECONDS", "15"),
            availability_cache_skus=int(
                _number(env, "OMNIROUTE_AVAILABILITY_CACHE_SKUS", "100000", high=10_000_000, integer=True)
            ),
        )


def _number(env: dict[str, str], name: str, default: str, *, high: float, integer: bool = False) -> float:
    """A number in [0, high] (a whole one if `integer`); anything else stops the start, naming the variable."""
    raw = env.get(name, default).strip() or default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a {'whole ' if integer else ''}number") from None
    if not (0 <= value <= high):
        raise ValueError(f"{name}={raw!r}: expected a number from 0 to {high}")
    return value


def _positive(env: dict[str, str], name: str, default: str) -> float:
    value = float(env.get(name, default))
    if not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value}")
    return value


def _flag(value: str) -> bool:
    return value.strip().lower() in ("on", "1", "true", "yes")


def _cron(value: str) -> str | None:
    value = value.strip()
    return None if value.lower() in ("", "off", "none") else value


PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = PROJECT_ROOT / "migrations"
FIXTURES_DIR = PROJECT_ROOT / "fixtures"


def load_costs(settings: Settings):  # noqa: ANN201 - engine.core.routing.CostModel
    """The routing cost model: defaults, overridden field by field by the JSON file named in
    OMNIROUTE_ROUTING_CONFIG (unknown fields are an error, so a typo cannot pass silently)."""
    from engine.core.routing import CostModel

    if settings.routing_config is None:
        return CostModel()
    overrides = msgspec.json.decode(settings.routing_config.read_bytes(), type=dict)
    unknown = sorted(set(overrides) - set(CostModel.__struct_fields__))
    if unknown:
        raise msgspec.ValidationError(
            f"{settings.routing_config}: unknown cost fields {', '.join(unknown)} "
            f"(known: {', '.join(CostModel.__struct_fields__)})"
        )
    return msgspec.convert({**msgspec.structs.asdict(CostModel()), **overrides}, CostModel, strict=True)
