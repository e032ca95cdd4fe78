import argparse
import dataclasses
import importlib
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import forecaster
from forecaster import config
from forecaster.config import (
    DETECTORS,
    SETTINGS,
    Settings,
    default,
    load_settings,
    settings_table_markdown,
)
from forecaster.errors import ConfigError

PACKAGE = Path(forecaster.__file__).parent


def test_defaults_file_environment_and_overrides_in_order(tmp_path: Path) -> None:
    toml = tmp_path / "f.toml"
    toml.write_text('[forecaster]\ndb = "from-file.duckdb"\nduckdb_threads = 1\n'
                    'max_reported_errors = 5\n')
    env = {"FORECASTER_DUCKDB_THREADS": "2", "FORECASTER_CONFIG": str(toml), "HOME": "/x"}
    settings = load_settings(env, None, {"db": Path("flag.duckdb"), "duckdb_memory_limit": None})
    assert settings == Settings(db=Path("flag.duckdb"), duckdb_threads=2, max_reported_errors=5)


def test_unknown_setting_in_file_is_named(tmp_path: Path) -> None:
    toml = tmp_path / "f.toml"
    toml.write_text("[forecaster]\ndbb = 'x'\n")
    with pytest.raises(ConfigError, match=r"f\.toml: unknown setting\(s\) dbb; known: .*db"):
        load_settings({}, toml)


def test_bad_values_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="duckdb_threads = 'many' is not an integer"):
        load_settings({"FORECASTER_DUCKDB_THREADS": "many"})
    toml = tmp_path / "broken.toml"
    toml.write_text("[forecaster\n")
    with pytest.raises(ConfigError, match="broken.toml"):
        load_settings({}, toml)


def test_an_unknown_anomaly_detector_is_named_with_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"anomaly_detector = 'magic' is not a known "
                                          r"detector; known: ecod, hbos, iforest, knn"):
        load_settings({"FORECASTER_ANOMALY_DETECTOR": "magic"})
    assert load_settings({"FORECASTER_ANOMALY_DETECTOR": "hbos"}).anomaly_detector == "hbos"


@pytest.mark.parametrize(("env", "problem"), [
    ({"FORECASTER_STALE_INTERVALS": "0"}, "stale_intervals = 0 must be 1 or more"),
    ({"FORECASTER_STALE_MIN": "0m"}, "stale_min must be longer than 0s"),
    ({"FORECASTER_STALE_MIN": "soon"}, "stale_min: 'soon' is not a duration"),
    ({"FORECASTER_SAMPLE_ROUNDS": "0"}, "sample_rounds = 0 must be 1 or more"),
    ({"FORECASTER_SAMPLE_PATHS": "0"}, "sample_paths = 0 must be 1 or more"),
])
def test_staleness_and_sampling_settings_are_checked(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_settings(env)


def test_staleness_and_sampling_defaults() -> None:
    settings = load_settings({"FORECASTER_STALE_MIN": "30m", "FORECASTER_STALE_INTERVALS": "12"})
    assert settings.stale_min == timedelta(minutes=30) and settings.stale_intervals == 12
    assert Settings().stale_min == timedelta(hours=1) and Settings().stale_intervals == 6
    assert Settings().sample_rounds == 8 and Settings().sample_paths == 2000


def test_reading_settings_does_not_import_the_models() -> None:
    # forecaster.config alone (the package's own __init__ bypassed, so that only what config
    # imports is measured): no PyOD, scikit-learn or statsforecast, seconds at every start.
    code = (
        "import sys, types\n"
        f"package = types.ModuleType('forecaster'); package.__path__ = [{str(PACKAGE)!r}]\n"
        "sys.modules['forecaster'] = package\n"
        "import forecaster.config\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'pyod', 'sklearn', 'statsforecast', 'scipy', 'polars', 'duckdb'})\n"
        "print(','.join(heavy))\n"
        "assert forecaster.config.DETECTORS\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == ""


def test_the_anomaly_module_makes_every_detector_config_accepts() -> None:
    from forecaster.engine.anomaly import make_detector

    for name in DETECTORS:
        assert hasattr(make_detector(name), "fit")
    with pytest.raises(ValueError, match="known: ecod, hbos, iforest, knn"):
        make_detector("magic")


# The table of settings is the one source of every default, check and help text.

def test_the_table_is_the_settings_fields_once_each_with_help_and_checked_defaults() -> None:
    names = [s.name for s in SETTINGS]
    assert names == [f.name for f in dataclasses.fields(Settings)]
    assert len(set(names)) == len(names) == 42
    for s in SETTINGS:
        assert s.help.strip() and "|" not in s.help and "\n" not in s.help, s.name
        # No number is left unchecked: before the table every int had to be 0 or more.
        assert s.rule is not None or s.type not in (int, float), s.name
        assert s.coerce(s.default, "table") == s.default, s.name
        assert getattr(Settings(), s.name) == s.default == default(s.name), s.name
    assert Settings.__doc__ is not None
    assert "stale_min: ... but never before this long without a point" in Settings.__doc__
    with pytest.raises(KeyError, match="unknown setting 'nope'; known: db, duckdb_threads"):
        default("nope")


def test_a_settings_class_that_drifts_from_the_table_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclasses.dataclass(frozen=True)
    class Drifted:
        db: Path = Path("forecaster.duckdb")

    monkeypatch.setattr(config, "Settings", Drifted)
    with pytest.raises(TypeError, match="Settings' fields differ from SETTINGS"):
        config._check_fields()


# Each engine dataclass field that a setting feeds, and the setting (pipeline.compute maps them).
ENGINE_DEFAULTS = {
    ("intervention", "DecisionSettings"): {
        "p_schedule": "p_schedule", "p_watch": "p_watch", "n_paths": "sample_paths",
        "refresh_every": "refresh_every", "rounds": "sample_rounds",
        "stale_intervals": "stale_intervals", "stale_min": "stale_min"},
    ("precursors", "PrecursorSettings"): {
        "threshold": "anomaly_threshold", "lookback": "anomaly_lookback",
        "fresh": "anomaly_fresh", "corroboration": "anomaly_corroboration"},
    ("anomaly", "AnomalySettings"): {"detector": "anomaly_detector"},
    ("forecast", "ForecastSettings"): {"n_jobs": "forecast_jobs"},
}


@pytest.mark.parametrize(("module", "name"), list(ENGINE_DEFAULTS))
def test_the_engine_settings_take_their_defaults_from_the_table(module: str, name: str) -> None:
    engine_settings = getattr(importlib.import_module(f"forecaster.engine.{module}"), name)()
    for field, setting in ENGINE_DEFAULTS[module, name].items():
        assert getattr(engine_settings, field) == getattr(Settings(), setting), (name, field)


def test_the_engine_defaults_are_the_known_values() -> None:
    # Known answers, so that a wrong row of the table cannot pass by being copied everywhere.
    from forecaster.engine.intervention import DecisionSettings
    from forecaster.engine.precursors import PrecursorSettings

    assert (DecisionSettings().p_schedule, DecisionSettings().n_paths) == (0.5, 2000)
    assert PrecursorSettings().threshold == pytest.approx(0.984)
    assert PrecursorSettings().corroboration == timedelta(minutes=30)
    assert PrecursorSettings().detector.detector == "ecod"


def test_the_readme_table_is_made_from_the_table() -> None:
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    start = readme.index("<!-- settings:")
    table = readme[readme.index("\n", start) + 1:readme.index("<!-- /settings -->", start)]
    assert table == settings_table_markdown(), (
        "README's settings table is stale: replace it by the output of python -c 'from "
        "forecaster.config import settings_table_markdown as t; print(t(), end=\"\")'")
    rows = {line.split(" | ")[0][3:].split("`")[0]: line for line in table.splitlines()[2:]}
    assert list(rows) == [s.name for s in SETTINGS]
    assert rows["stale_min"] == ("| `stale_min` | `1h` | a duration longer than 0s | ... but "
                                 "never before this long without a point, so that an ingest "
                                 "that delivers every few minutes is not mistaken for a stopped "
                                 "feed (keep it above the delay of your ingest) |")
    assert rows["port"] == "| `port` (`--port`) | 8000 | an integer, 0 or more | port `serve` " \
                           "listens on |"
    assert "| `read_tokens` | none | text |" in rows["read_tokens"]
    assert "| `anomaly_detector` | `ecod` | `ecod`, `hbos`, `iforest` or `knn` |" in table


def test_every_flag_the_table_names_is_a_flag_of_the_command_line() -> None:
    from forecaster.cli import _parser

    def flags(parser: argparse.ArgumentParser) -> set[str]:
        found: set[str] = set()
        for action in parser._actions:
            found.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    found |= flags(sub)
        return found

    named = {s.flag for s in SETTINGS if s.flag}
    assert named == {"--db", "--host", "--port"} and named <= flags(_parser())


@pytest.mark.parametrize(("name", "raw", "problem"), [
    ("duckdb_threads", "-1", "duckdb_threads = -1 must be 0 or more"),
    ("port", "-80", "port = -80 must be 0 or more"),
    ("sample_paths", "-3", "sample_paths = -3 must be 1 or more"),
    ("p_watch", "1.5", r"p_watch = 1.5 must be a probability in \[0, 1\]"),
    ("anomaly_threshold", "nan", r"anomaly_threshold = nan must be a probability in \[0, 1\]"),
    ("p_schedule", "half", "p_schedule = 'half' is not a number"),
    ("seed", "1.5", "seed = '1.5' is not an integer"),
    ("refresh_every", "often", "refresh_every: 'often' is not a duration such as 30m"),
    ("anomaly_detector", "ECOD", "anomaly_detector = 'ECOD' is not a known detector; known: "
                                 "ecod, hbos, iforest, knn"),
])
def test_every_bad_value_names_the_setting_the_value_and_what_is_allowed(
        name: str, raw: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=f"^settings: {problem}"):
        load_settings({f"FORECASTER_{name.upper()}": raw})
    with pytest.raises(ConfigError, match=f"^arguments: {problem}"):
        Settings().replace(**{name: raw})


def test_good_values_of_every_type_are_read_from_text() -> None:
    settings = load_settings({"FORECASTER_DB": "x.duckdb", "FORECASTER_P_WATCH": "0.25",
                              "FORECASTER_ANOMALY_FRESH": "1d12h", "FORECASTER_PORT": "0",
                              "FORECASTER_SAMPLE_PATHS": "1", "FORECASTER_HOST": "0.0.0.0"})
    assert settings == Settings(db=Path("x.duckdb"), p_watch=0.25, port=0, sample_paths=1,
                                anomaly_fresh=timedelta(hours=36), host="0.0.0.0")


def test_describe_shows_every_setting_as_text_and_never_a_token() -> None:
    settings = Settings(read_tokens="secret-r", write_tokens="", anomaly_fresh=timedelta(hours=36))
    shown = settings.describe()
    assert list(shown) == [s.name for s in SETTINGS]
    assert shown["read_tokens"] == "***" and shown["write_tokens"] == ""
    assert "secret-r" not in str(shown)
    assert (shown["anomaly_fresh"], shown["stale_min"], shown["db"]) == (
        "1d12h", "1h", "forecaster.duckdb")
    assert (shown["p_schedule"], shown["max_request_bytes"]) == ("0.5", "10000000")
