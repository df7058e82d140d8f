import msgspec
import pytest

from engine.config import Settings, load_costs


def test_costs_default_to_the_published_constants():
    costs = load_costs(Settings.from_env({}))
    assert (costs.package_cost, costs.km_cost) == (8.759, 0.000336)


def test_a_routing_config_file_overrides_field_by_field(tmp_path):
    path = tmp_path / "costs.json"
    path.write_text('{"package_cost": 6.5, "late_penalty_per_day": 12}')
    costs = load_costs(Settings.from_env({"OMNIROUTE_ROUTING_CONFIG": str(path)}))
    assert (costs.package_cost, costs.late_penalty_per_day, costs.km_cost) == (6.5, 12, 0.000336)


def test_a_misspelt_or_mistyped_cost_is_refused(tmp_path):
    path = tmp_path / "costs.json"
    path.write_text('{"package_cots": 6.5}')
    with pytest.raises(msgspec.ValidationError):
        load_costs(Settings.from_env({"OMNIROUTE_ROUTING_CONFIG": str(path)}))
    path.write_text('{"package_cost": "cheap"}')
    with pytest.raises(msgspec.ValidationError):
        load_costs(Settings.from_env({"OMNIROUTE_ROUTING_CONFIG": str(path)}))


def test_rate_limiting_is_off_unless_set_and_its_burst_defaults_to_one_second():
    assert Settings.from_env({}).rate_limit_per_second == 0
    settings = Settings.from_env({"OMNIROUTE_RATE_LIMIT_PER_SECOND": "50"})
    assert (settings.rate_limit_per_second, settings.rate_limit_burst) == (50, 50)
    settings = Settings.from_env({"OMNIROUTE_RATE_LIMIT_PER_SECOND": "0.5", "OMNIROUTE_RATE_LIMIT_BURST": "4"})
    assert (settings.rate_limit_per_second, settings.rate_limit_burst) == (0.5, 4)
    assert Settings.from_env({"OMNIROUTE_RATE_LIMIT_PER_SECOND": "0.2"}).rate_limit_burst == 1


def test_the_key_cache_lifetime_defaults_to_five_seconds():
    assert Settings.from_env({}).key_cache_seconds == 5
    assert Settings.from_env({"OMNIROUTE_KEY_CACHE_SECONDS": "0"}).key_cache_seconds == 0


@pytest.mark.parametrize(
    "env",
    [
        {"OMNIROUTE_RATE_LIMIT_PER_SECOND": "fast"},
        {"OMNIROUTE_RATE_LIMIT_PER_SECOND": "-1"},
        {"OMNIROUTE_RATE_LIMIT_PER_SECOND": "nan"},
        {"OMNIROUTE_RATE_LIMIT_PER_SECOND": "inf"},
        {"OMNIROUTE_RATE_LIMIT_PER_SECOND": "10", "OMNIROUTE_RATE_LIMIT_BURST": "0"},
        {"OMNIROUTE_RATE_LIMIT_PER_SECOND": "10", "OMNIROUTE_RATE_LIMIT_BURST": "2.5"},
        {"OMNIROUTE_KEY_CACHE_SECONDS": "61"},
        {"OMNIROUTE_KEY_CACHE_SECONDS": "-0.1"},
    ],
)
def test_a_bad_limit_setting_stops_the_start_naming_the_variable(env):
    with pytest.raises(ValueError, match="OMNIROUTE_"):
        Settings.from_env(env)


def test_change_feed_settings_default_and_must_be_positive():
    s = Settings.from_env({})
    assert (s.events_retention_hours, s.events_publish_ms, s.events_keepalive_seconds) == (72.0, 5.0, 15.0)
    s = Settings.from_env({"OMNIROUTE_EVENTS_RETENTION_HOURS": "0.5", "OMNIROUTE_EVENTS_PUBLISH_MS": "50"})
    assert (s.events_retention_hours, s.events_publish_ms) == (0.5, 50.0)
    for name in (
        "OMNIROUTE_EVENTS_RETENTION_HOURS",
        "OMNIROUTE_EVENTS_PUBLISH_MS",
        "OMNIROUTE_EVENTS_KEEPALIVE_SECONDS",
    ):
        with pytest.raises(ValueError, match=name):
            Settings.from_env({name: "0"})
