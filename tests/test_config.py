import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import forecaster
from forecaster.config import DETECTORS, Settings, load_settings
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
