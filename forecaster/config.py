"""Settings: read once at the edge (CLI, server start) and passed explicitly.

Sources, later ones winning: built-in defaults, a TOML file (``--config`` or ``FORECASTER_CONFIG``),
environment variables ``FORECASTER_<NAME>`` (upper-case field name), then command-line flags.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from forecaster.errors import ConfigError
from forecaster.policies import format_duration, parse_duration

ENV_PREFIX = "FORECASTER_"
# The PyOD detectors forecaster.engine.anomaly can make. Kept here, not there, so that reading the
# settings does not import PyOD and scikit-learn (seconds at every command's start).
DETECTORS = ("ecod", "hbos", "iforest", "knn")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable, with defaults that suit one machine of 2 cores.

    Attributes:
        db: Path of the DuckDB file.
        duckdb_threads: Threads DuckDB may use; 0 lets DuckDB decide (all cores).
        duckdb_memory_limit: DuckDB's memory limit, for example ``"4GB"``; empty lets DuckDB decide
            (80% of RAM). Larger work spills to a temporary directory beside the database.
        max_reported_errors: How many rejected rows an ingest report lists (all are counted).
        policies: A policy TOML file added to the built-in policies; empty for none.
        refresh_every: How often the service refreshes; answers say when to look again by it.
        selection_max_age: How long a model choice is kept before cross-validation re-makes it.
        forecast_jobs: Processes statsforecast may use.
        p_schedule: ``p_breach`` from which an action is scheduled (or due now).
        p_watch: ``p_breach`` from which a series is watched.
        sample_paths: Sample paths per series for the first-passage distribution.
        sample_rounds: When ``p_breach`` is too close to ``p_schedule`` or ``p_watch`` for
            ``sample_paths`` to settle the decision (within 3 standard errors), more paths are
            drawn, ``sample_paths`` at a time, until it is clear or this many rounds were drawn
            (8: up to 16,000 paths by default). 1 never draws more.
        seed: Seed of the sample paths, so that the same data gives the same answer: each
            series' paths are seeded by this and a stable hash of its name (never by a storage
            id), so the same points give the same answer in any database.
        stale_intervals: A series is ``stale`` (its feed stopped: a monitoring problem, not a
            forecast) when no point arrived for this many of its usual sampling intervals (the
            median spacing of its recent points): 6 means a 5-minute series is stale after 30
            minutes without data, an hourly one after 6 hours. A policy's ``stale_after`` wins.
        stale_min: ... but never before this long without data (1h by default, so a scraper or
            an ingest glob that delivers every few minutes is not mistaken for a stopped feed).
        anomaly_detector: PyOD detector of precursor anomalies (ecod, hbos, iforest, knn).
        anomaly_threshold: Onset score from which an anomaly is reported (the NAB sweep's).
        anomaly_lookback: How far back each refresh reports anomalies.
        anomaly_fresh: How recent a precursor must be to change an answer.
        anomaly_corroboration: How close in time anomalies of two kinds of metric of one service
            must be to make both precursors.
        reliability_window: How far back self-scoring looks when judging a series' estimates.
        calibration_prior: Weight of the identity in the recalibration map, in estimates (one
            series' estimates of one day weigh 1); see forecaster.engine.calibration.
        calibration_min_weight: Weight the fleet's scored estimates need before the map is
            applied.
        host: Address ``serve`` binds to; without tokens only a loopback address is allowed.
        port: Port ``serve`` listens on.
        read_tokens: Comma-separated bearer tokens that may read the API.
        write_tokens: Comma-separated bearer tokens that may read and write (ingest, events,
            runs).
        max_request_bytes: Largest request body the API accepts (413 beyond).
        ingest_points_from: Glob of point files each scheduled refresh ingests first (new or
            changed files only).
        ingest_requests_from: The same for request-log files.
    """

    db: Path = Path("forecaster.duckdb")
    duckdb_threads: int = 0
    duckdb_memory_limit: str = ""
    max_reported_errors: int = 20
    policies: str = ""
    refresh_every: timedelta = timedelta(minutes=15)
    selection_max_age: timedelta = timedelta(days=1)
    forecast_jobs: int = 1
    p_schedule: float = 0.5
    p_watch: float = 0.1
    sample_paths: int = 2000
    sample_rounds: int = 8
    seed: int = 0
    stale_intervals: int = 6
    stale_min: timedelta = timedelta(hours=1)
    anomaly_detector: str = "ecod"
    anomaly_threshold: float = 0.984
    anomaly_lookback: timedelta = timedelta(hours=24)
    anomaly_fresh: timedelta = timedelta(hours=12)
    anomaly_corroboration: timedelta = timedelta(minutes=30)
    reliability_window: timedelta = timedelta(days=30)
    calibration_prior: int = 30
    calibration_min_weight: int = 20
    host: str = "127.0.0.1"
    port: int = 8000
    read_tokens: str = ""
    write_tokens: str = ""
    max_request_bytes: int = 10_000_000
    ingest_points_from: str = ""
    ingest_requests_from: str = ""

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and checked."""
        return _build({**dataclasses.asdict(self), **changes}, "arguments")

    def describe(self) -> dict[str, str]:
        """Every setting as text, for provenance (tokens are never shown)."""
        return {k: ("***" if v else "") if k.endswith("_tokens") else
                format_duration(v) if isinstance(v, timedelta) else str(v)
                for k, v in dataclasses.asdict(self).items()}

    def tokens(self) -> dict[str, str]:
        """Each configured bearer token and its scope (``read`` or ``write``)."""
        scopes = {t.strip(): "read" for t in self.read_tokens.split(",") if t.strip()}
        scopes.update({t.strip(): "write" for t in self.write_tokens.split(",") if t.strip()})
        return scopes


def _coerce(name: str, raw: Any, kind: type, origin: str) -> Any:
    if kind is Path:
        return Path(raw)
    if kind is int:
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{origin}: {name} = {raw!r} is not an integer") from None
        if value < 0:
            raise ConfigError(f"{origin}: {name} = {value} must be 0 or more")
        return value
    if kind is str:
        return str(raw)
    if kind is float:
        try:
            number = float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{origin}: {name} = {raw!r} is not a number") from None
        if not 0.0 <= number <= 1.0:
            raise ConfigError(f"{origin}: {name} = {number} must be a probability in [0, 1]")
        return number
    if kind is timedelta:
        if isinstance(raw, timedelta):
            return raw
        try:
            return parse_duration(str(raw))
        except ValueError as exc:
            raise ConfigError(f"{origin}: {name}: {exc}") from None
    raise ConfigError(f"{origin}: {name} has an unsupported type")


_TYPES: dict[str, type] = {f.name: (f.type if isinstance(f.type, type) else
                                    {"Path": Path, "int": int, "str": str, "float": float,
                                     "timedelta": timedelta}[str(f.type)])
                           for f in dataclasses.fields(Settings)}


def _build(values: Mapping[str, Any], origin: str) -> Settings:
    known = {f.name for f in dataclasses.fields(Settings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{origin}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    settings = Settings(**{k: _coerce(k, v, _TYPES[k], origin) for k, v in values.items()})
    if settings.sample_paths < 1:
        raise ConfigError(f"{origin}: sample_paths = 0 must be 1 or more")
    if settings.sample_rounds < 1:
        raise ConfigError(f"{origin}: sample_rounds = 0 must be 1 or more")
    if settings.stale_intervals < 1:
        raise ConfigError(f"{origin}: stale_intervals = 0 must be 1 or more")
    if settings.stale_min <= timedelta(0):
        raise ConfigError(f"{origin}: stale_min must be longer than 0s")
    if settings.anomaly_detector not in DETECTORS:
        raise ConfigError(f"{origin}: anomaly_detector = {settings.anomaly_detector!r} is not a "
                          f"known detector; known: {', '.join(DETECTORS)}")
    return settings


def load_settings(
    environ: Mapping[str, str],
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build settings from a TOML file, the environment and explicit overrides.

    Args:
        environ: The environment to read ``FORECASTER_*`` variables from (pass ``os.environ``).
        config_file: A TOML file; when None, ``FORECASTER_CONFIG`` names one if set.
        overrides: Values that win over everything else (command-line flags); None values are
            ignored.

    Returns:
        The settings.

    Raises:
        ConfigError: a file that cannot be read or parsed, or an unknown or invalid setting.
    """
    values: dict[str, Any] = {}
    path = config_file or (Path(environ[f"{ENV_PREFIX}CONFIG"])
                           if environ.get(f"{ENV_PREFIX}CONFIG") else None)
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read settings file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"settings file {path}: {exc}") from None
        table = data.get("forecaster", data)
        if not isinstance(table, dict):
            raise ConfigError(f"settings file {path}: [forecaster] must be a table")
        values.update({k: v for k, v in table.items() if not isinstance(v, dict)})
        _build(values, str(path))  # report file errors against the file
    fields = {f.name for f in dataclasses.fields(Settings)}
    for key, raw in environ.items():
        if key.startswith(ENV_PREFIX) and key != f"{ENV_PREFIX}CONFIG":
            name = key[len(ENV_PREFIX):].lower()
            if name in fields:
                values[name] = raw
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return _build(values, "settings")
