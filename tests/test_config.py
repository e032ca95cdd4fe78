from pathlib import Path

import pytest

from forecaster.config import Settings, load_settings
from forecaster.schema import ConfigError


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
