"""Loading a generated network (demo or large) into an empty database."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from engine.store import bulk, meta
from engine.store.db import connect

if TYPE_CHECKING:
    from fixtures.generate import Network

DEMO_SEED = 7
LARGE_SEED = 11
SIZES = ("demo", "large")


def _build(size: str) -> tuple[int, Network]:
    """(seed, network) for a fixture size; the generator is imported only when loading."""
    from fixtures.generate import demo_network, large_network

    if size == "demo":
        return DEMO_SEED, demo_network(seed=DEMO_SEED)
    return LARGE_SEED, large_network(seed=LARGE_SEED)


async def load(url: str, size: str, *, show_progress: bool = True) -> dict:
    """Generate the `size` network and load it in one transaction; return counts and timing.

    Refuses (RuntimeError) when any location already exists: fixtures only go into an
    empty network, never on top of real data. Output (progress bar, summary) goes to
    stderr so that callers can print the returned dict on stdout.
    """
    if size not in SIZES:
        raise ValueError(f"unknown fixture size {size!r}; expected one of {', '.join(SIZES)}")
    started = time.monotonic()
    conn = await connect(url)
    try:
        if await meta.has_locations(conn):
            raise RuntimeError(
                "refusing to load fixtures: the database already has locations. "
                "Fixtures only load into an empty network; use a fresh database."
            )
        seed, net = _build(size)
        reference = f"fixtures:{size}:{seed}"
        if show_progress:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            console = Console(stderr=True)
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
            ) as bar:
                task = bar.add_task(f"loading {size} positions", total=net.position_count_estimate)

                def on_batch(done: int) -> None:
                    bar.update(task, completed=done)

                counts = await bulk.load_network(conn, net, reference=reference, progress=on_batch)
        else:
            console = None
            counts = await bulk.load_network(conn, net, reference=reference)
        loaded_s = time.monotonic() - started
        await bulk.analyze(conn)
        await meta.set_setting(conn, "network", {"size": size, "seed": seed, **counts})
        elapsed = time.monotonic() - started
        result = {
            "size": size,
            "seed": seed,
            **counts,
            "load_seconds": round(loaded_s, 2),
            "elapsed_seconds": round(elapsed, 2),
        }
        if console is not None:
            console.print(
                f"loaded {size} network: {counts['locations']} locations, {counts['items']} items, "
                f"{counts['positions']} positions, {counts['movements']} movements in {elapsed:.1f} s"
            )
        return result
    finally:
        await conn.close()
