"""Settings: read once at the edge (CLI, server start) and passed explicitly.

Sources, later ones winning: built-in defaults, a TOML file (``--config`` or ``FORECASTER_CONFIG``),
environment variables ``FORECASTER_<NAME>`` (upper-case field name), then command-line flags.

Every setting is one row of :data:`SETTINGS` (name, default, type, help and what values are
allowed), the way Datasette declares its settings: :class:`Settings`' fields and docstring, the
checks of :func:`load_settings`, :meth:`Settings.describe`, the defaults of the engine's own
settings (``DecisionSettings``, ``PrecursorSettings``, ...: see :func:`default`) and the README's
table (:func:`settings_table_markdown`) all come from it, so a default or a help text is written
once.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from forecaster.errors import ConfigError
from forecaster.policies import parse_duration
from forecaster.wording import format_duration

ENV_PREFIX = "FORECASTER_"
# The PyOD detectors forecaster.engine.anomaly can make. Kept here, not there, so that reading the
# settings does not import PyOD and scikit-learn (seconds at every command's start).
DETECTORS = ("ecod", "hbos", "iforest", "knn")


@dataclass(frozen=True, slots=True)
class Rule:
    """Which values of a setting are allowed, beyond being of its type.

    Attributes:
        allows: Whether a value (already of the setting's type) is allowed.
        allowed: What is allowed, in words, for the documentation.
        problem: The error for a value not allowed; formatted with ``name`` and ``value``.
    """

    allows: Callable[[Any], bool]
    allowed: str
    problem: str


def at_least(low: int) -> Rule:
    """An integer of ``low`` or more."""
    return Rule(lambda value: value >= low, f"an integer, {low} or more",
                f"{{name}} = {{value}} must be {low} or more")


def one_of(options: tuple[str, ...], noun: str) -> Rule:
    """One of ``options``, each a ``noun``."""
    return Rule(lambda value: value in options,
                ", ".join(f"`{o}`" for o in options[:-1]) + f" or `{options[-1]}`",
                f"{{name}} = {{value!r}} is not a known {noun}; known: {', '.join(options)}")


PROBABILITY = Rule(lambda value: 0.0 <= value <= 1.0, "a number in [0, 1]",
                   "{name} = {value} must be a probability in [0, 1]")
LONGER_THAN_ZERO = Rule(lambda value: value > timedelta(0), "a duration longer than 0s",
                        "{name} must be longer than 0s")

# The weekly report: on which day, at what time of day, in which time zone, with which what-ifs.
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK_TIME = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


def clock_time(text: str) -> tuple[int, int]:
    """``"06:30"`` -> ``(6, 30)``.

    Raises:
        ValueError: not a 24-hour ``HH:MM`` time of day.
    """
    match = _CLOCK_TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a time of day HH:MM (24-hour), for example 06:00")
    return int(match[1]), int(match[2])


def _is_clock_time(text: str) -> bool:
    try:
        clock_time(text)
    except ValueError:
        return False
    return True


def _is_time_zone(text: str) -> bool:
    # zoneinfo refuses an unknown key, a path, a folder of the database and a NUL differently
    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def demand_factors(text: str) -> tuple[float, ...]:
    """``"1.3, 2"`` -> ``(1.3, 2.0)``: the what-if demand multipliers (empty: none).

    Raises:
        ValueError: an item that is not a finite number above 0; the message names it.
    """
    factors = []
    for item in (part.strip() for part in text.split(",")) if text.strip() else ():
        try:
            factor = float(item)
        except ValueError:
            raise ValueError(f"{item!r} is not a number") from None
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"{item!r} is not a number above 0")
        factors.append(factor)
    return tuple(factors)


def _are_factors(text: str) -> bool:
    try:
        demand_factors(text)
    except ValueError:
        return False
    return True


CLOCK_TIME = Rule(_is_clock_time, "a time of day `HH:MM` (24-hour)",
                  "{name} = {value!r} is not a time of day; write HH:MM (24-hour), for example "
                  "06:00")
TIME_ZONE = Rule(_is_time_zone, "an IANA time zone name such as `UTC` or `Europe/Paris`",
                 "{name} = {value!r} is not a known IANA time zone name; write one such as UTC, "
                 "Europe/Paris or America/New_York")
HTTP_URL = Rule(lambda value: value == "" or re.fullmatch(r"https?://[^\s@/?#]+(/\S*)?",
                                                          value) is not None,
                "empty, or an `http://` or `https://` URL without credentials in it",
                # the value is not echoed: a URL with user:password@ in it holds a password
                "{name} is not an http:// or https:// URL without user:password@ in it "
                "(credentials go in prometheus_user/prometheus_password or prometheus_token)")
FACTORS = Rule(_are_factors, "numbers above 0, comma-separated (empty for none)",
               "{name} = {value!r} is not a list of demand multipliers; write numbers above 0 "
               "separated by commas, for example 1.3 or 1.3,2")

# How a value of each type is written in the documentation when no rule says more.
_TYPE_WORDS: dict[type, str] = {Path: "a path", str: "text", int: "an integer",
                                float: "a number", timedelta: "a duration"}


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting.

    Attributes:
        name: Field of :class:`Settings`; ``FORECASTER_<NAME>`` in the environment.
        default: Its value when nothing sets it.
        type: ``Path``, ``str``, ``int``, ``float`` or ``timedelta`` (written ``30m``, ``1d12h``).
        help: What it means, one line of Markdown for the README and the docstring.
        rule: Which values are allowed beyond the type (every ``int`` and ``float`` has one).
        flag: The command-line flag that also sets it, if any.
        secret: Never shown by :meth:`Settings.describe` (bearer tokens).
    """

    name: str
    default: Any
    type: type
    help: str
    rule: Rule | None = None
    flag: str = ""
    secret: bool = False

    def text(self, value: Any) -> str:
        """``value`` as provenance shows it (durations as ``1d12h``, secrets hidden)."""
        if self.secret:
            return "***" if value else ""
        return format_duration(value) if isinstance(value, timedelta) else str(value)

    def allowed(self) -> str:
        """What values are allowed, in words."""
        return self.rule.allowed if self.rule else _TYPE_WORDS[self.type]

    def coerce(self, raw: Any, origin: str) -> Any:
        """``raw`` (from TOML, the environment or a flag) as this setting's type, checked.

        Raises:
            ConfigError: not of the type, or not allowed; names ``origin``, the setting and the
                value.
        """
        value = _parse(self.name, raw, self.type, origin)
        if self.rule is not None and not self.rule.allows(value):
            raise ConfigError(f"{origin}: " + self.rule.problem.format(name=self.name,
                                                                       value=value))
        return value


def _parse(name: str, raw: Any, kind: type, origin: str) -> Any:
    if kind is Path:
        return Path(raw)
    if kind is str:
        return str(raw)
    if kind is int:
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{origin}: {name} = {raw!r} is not an integer") from None
    if kind is float:
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{origin}: {name} = {raw!r} is not a number") from None
    if kind is timedelta:
        if isinstance(raw, timedelta):
            return raw
        try:
            return parse_duration(str(raw))
        except ValueError as exc:
            raise ConfigError(f"{origin}: {name}: {exc}") from None
    raise ConfigError(f"{origin}: {name} has an unsupported type {kind.__name__}")


SETTINGS: tuple[Setting, ...] = (
    Setting("db", Path("forecaster.duckdb"), Path, "the DuckDB file", flag="--db"),
    Setting("duckdb_threads", 0, int, "threads DuckDB may use; 0 lets DuckDB decide (all cores)",
            at_least(0)),
    Setting("duckdb_memory_limit", "", str,
            "DuckDB's memory limit, for example `4GB`; empty lets DuckDB decide (80% of RAM). "
            "Larger work spills to a temporary directory beside the database"),
    Setting("max_reported_errors", 20, int,
            "rejected rows an ingest report lists per file (all are counted)", at_least(0)),
    Setting("policies", "", str, "a policy TOML file added to the built-in policies"),
    Setting("refresh_every", timedelta(minutes=15), timedelta,
            "how often the service refreshes; answers' `next_check_at` follows it"),
    Setting("selection_max_age", timedelta(days=1), timedelta,
            "how long a model choice is kept before cross-validation re-makes it"),
    Setting("forecast_jobs", 1, int, "processes statsforecast may use", at_least(0)),
    Setting("p_schedule", 0.5, float,
            "`p_breach` from which an action is scheduled (or due now)", PROBABILITY),
    Setting("p_watch", 0.1, float, "`p_breach` from which a series is watched", PROBABILITY),
    Setting("sample_paths", 2000, int,
            "sample paths per series (per round) for the first-passage distribution",
            at_least(1)),
    Setting("sample_rounds", 8, int,
            "while `p_breach` is within 3 standard errors of `p_schedule` or `p_watch`, more "
            "rounds of `sample_paths` are drawn until it is clear, up to this many rounds in "
            "all (8: up to 16,000 paths by default); 1 never draws more", at_least(1)),
    Setting("seed", 0, int,
            "seed of the sample paths, with a stable hash of each series' name (never a "
            "storage id): the same points give the same answer in any database", at_least(0)),
    Setting("stale_intervals", 6, int,
            "a series is `stale` (its feed stopped: a monitoring problem, not a forecast) after "
            "this many of its usual sampling intervals (the median spacing of its recent "
            "points) without a point: 6 makes a 5-minute series stale after 30 minutes, an "
            "hourly one after 6 hours. A policy's `stale_after` wins", at_least(1)),
    Setting("stale_min", timedelta(hours=1), timedelta,
            "... but never before this long without a point, so that an ingest that delivers "
            "every few minutes is not mistaken for a stopped feed (keep it above the delay of "
            "your ingest)", LONGER_THAN_ZERO),
    Setting("anomaly_detector", "ecod", str, "PyOD detector of precursor anomalies",
            one_of(DETECTORS, "detector")),
    # bench/nab.py: the standard-profile threshold its corpus-wide sweep chose (0.984033 on the
    # NAB corpus with the default AnomalySettings, 2026-11-26).
    Setting("anomaly_threshold", 0.984, float,
            "onset score from which an anomaly is reported (the NAB sweep's)", PROBABILITY),
    Setting("anomaly_lookback", timedelta(hours=24), timedelta,
            "how far back each refresh reports anomalies"),
    Setting("anomaly_fresh", timedelta(hours=12), timedelta,
            "how recent a precursor must be to change an answer"),
    Setting("anomaly_corroboration", timedelta(minutes=30), timedelta,
            "how close in time anomalies of two kinds of metric of one service must be to make "
            "both precursors"),
    Setting("reliability_window", timedelta(days=30), timedelta,
            "how far back self-scoring looks when judging a series' estimates"),
    Setting("calibration_prior", 30, int,
            "weight of the identity in the recalibration map, in estimates (one series' "
            "estimates of one day weigh 1)", at_least(0)),
    Setting("calibration_min_weight", 20, int,
            "weight the fleet's scored estimates need before answers use the recalibration map",
            at_least(0)),
    Setting("host", "127.0.0.1", str,
            "address `serve` binds to; without tokens only a loopback address is allowed",
            flag="--host"),
    Setting("port", 8000, int, "port `serve` listens on", at_least(0), flag="--port"),
    Setting("read_tokens", "", str, "comma-separated bearer tokens that may read the API",
            secret=True),
    Setting("write_tokens", "", str,
            "comma-separated bearer tokens that may read and write (ingest, events, runs)",
            secret=True),
    Setting("max_request_bytes", 10_000_000, int,
            "largest request body the API accepts (413 beyond)", at_least(0)),
    Setting("ingest_points_from", "", str,
            "glob of point files each scheduled refresh ingests first (new or changed files: "
            "by modification time and size, known by their resolved path, so `./in/*.csv` and "
            "`in/*.csv` are the same)"),
    Setting("ingest_requests_from", "", str, "the same for request-log files"),
    Setting("report_day", "mon", str,
            "day of the week the service makes the weekly capacity-planning report, of the last "
            "full ISO week (Monday to Sunday, UTC)", one_of(WEEKDAYS, "day of the week")),
    Setting("report_time", "06:00", str,
            "time of day the weekly report is made, in `report_timezone`", CLOCK_TIME),
    Setting("report_timezone", "UTC", str,
            "time zone of `report_day` and `report_time`; the job reports on the ISO week "
            "that last ended in this zone's calendar (its runs are read in UTC)", TIME_ZONE),
    Setting("report_what_if", "1.3", str,
            "demand multipliers of the report's what-ifs: `1.3,2` shows 30% and 100% more "
            "demand", FACTORS),
    Setting("prometheus_sources", "", str,
            "a TOML file of Prometheus sources (`[[preset]]` such as vLLM's, `[[source]]` "
            "PromQL queries) each refresh pulls first, from where the last pull ended less "
            "`prometheus_overlap`; read again at every refresh; empty: none"),
    Setting("prometheus_url", "", str,
            "the Prometheus of sources that name none, and of `ingest prometheus` without "
            "`--url`", HTTP_URL),
    Setting("prometheus_token", "", str, "bearer token sent to Prometheus", secret=True),
    Setting("prometheus_user", "", str, "basic-auth user for Prometheus (instead of a token)"),
    Setting("prometheus_password", "", str, "basic-auth password for Prometheus", secret=True),
    Setting("prometheus_timeout", timedelta(seconds=30), timedelta,
            "how long one Prometheus request may take (also sent as its query timeout)",
            LONGER_THAN_ZERO),
    Setting("prometheus_overlap", timedelta(minutes=10), timedelta,
            "how far back before the last pull's end each pull starts again, to pick up samples "
            "that arrived late (points already stored are not stored twice)"),
    Setting("prometheus_lookback", timedelta(days=7), timedelta,
            "how far back a source's first pull starts (after a start of the service, too), and "
            "`ingest prometheus` without `--start`", LONGER_THAN_ZERO),
)
_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


def default(name: str) -> Any:
    """The default of setting ``name``: the one place the engine's settings take theirs from.

    Raises:
        KeyError: no such setting.
    """
    try:
        return _BY_NAME[name].default
    except KeyError:
        raise KeyError(f"unknown setting {name!r}; known: {', '.join(_BY_NAME)}") from None


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable, with defaults that suit one machine of 2 cores.

    One field per row of :data:`SETTINGS`, which holds each default and meaning (appended to
    this docstring below, for ``help(Settings)``).
    """

    # Field names and types repeat the table's so that type checkers see them; the defaults
    # come from it, and _check_fields refuses any difference at import.
    db: Path = default("db")
    duckdb_threads: int = default("duckdb_threads")
    duckdb_memory_limit: str = default("duckdb_memory_limit")
    max_reported_errors: int = default("max_reported_errors")
    policies: str = default("policies")
    refresh_every: timedelta = default("refresh_every")
    selection_max_age: timedelta = default("selection_max_age")
    forecast_jobs: int = default("forecast_jobs")
    p_schedule: float = default("p_schedule")
    p_watch: float = default("p_watch")
    sample_paths: int = default("sample_paths")
    sample_rounds: int = default("sample_rounds")
    seed: int = default("seed")
    stale_intervals: int = default("stale_intervals")
    stale_min: timedelta = default("stale_min")
    anomaly_detector: str = default("anomaly_detector")
    anomaly_threshold: float = default("anomaly_threshold")
    anomaly_lookback: timedelta = default("anomaly_lookback")
    anomaly_fresh: timedelta = default("anomaly_fresh")
    anomaly_corroboration: timedelta = default("anomaly_corroboration")
    reliability_window: timedelta = default("reliability_window")
    calibration_prior: int = default("calibration_prior")
    calibration_min_weight: int = default("calibration_min_weight")
    host: str = default("host")
    port: int = default("port")
    read_tokens: str = default("read_tokens")
    write_tokens: str = default("write_tokens")
    max_request_bytes: int = default("max_request_bytes")
    ingest_points_from: str = default("ingest_points_from")
    ingest_requests_from: str = default("ingest_requests_from")
    report_day: str = default("report_day")
    report_time: str = default("report_time")
    report_timezone: str = default("report_timezone")
    report_what_if: str = default("report_what_if")
    prometheus_sources: str = default("prometheus_sources")
    prometheus_url: str = default("prometheus_url")
    prometheus_token: str = default("prometheus_token")
    prometheus_user: str = default("prometheus_user")
    prometheus_password: str = default("prometheus_password")
    prometheus_timeout: timedelta = default("prometheus_timeout")
    prometheus_overlap: timedelta = default("prometheus_overlap")
    prometheus_lookback: timedelta = default("prometheus_lookback")

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and checked."""
        return _build({**dataclasses.asdict(self), **changes}, "arguments")

    def describe(self) -> dict[str, str]:
        """Every setting as text, for provenance (tokens are never shown)."""
        return {s.name: s.text(getattr(self, s.name)) for s in SETTINGS}

    def tokens(self) -> dict[str, str]:
        """Each configured bearer token and its scope (``read`` or ``write``)."""
        scopes = {t.strip(): "read" for t in self.read_tokens.split(",") if t.strip()}
        scopes.update({t.strip(): "write" for t in self.write_tokens.split(",") if t.strip()})
        return scopes


def _check_fields() -> None:
    """Refuse a :class:`Settings` whose fields differ from :data:`SETTINGS` in name, order,
    type or default (annotations are strings here: ``from __future__ import annotations``)."""
    fields = [(f.name, f.type, f.default) for f in dataclasses.fields(Settings)]
    table = [(s.name, s.type.__name__, s.default) for s in SETTINGS]
    if fields != table or len(_BY_NAME) != len(SETTINGS):
        raise TypeError("Settings' fields differ from SETTINGS: "
                        f"{sorted(set(fields) ^ set(table), key=str)}")


def _attributes() -> str:
    return "\n".join(f"        {s.name}: {s.help[0].upper()}{s.help[1:]} (default "
                     f"{s.text(s.default) or 'empty'})." for s in SETTINGS)


_check_fields()
Settings.__doc__ = f"{(Settings.__doc__ or '').rstrip()}\n\n    Attributes:\n{_attributes()}\n"


def settings_table_markdown() -> str:
    """The README's table of settings (between its ``settings`` markers), made from the table."""
    rows = ["| setting | default | allowed | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        name = f"`{s.name}`" + (f" (`{s.flag}`)" if s.flag else "")
        shown = s.text(s.default)
        if not shown:
            shown = "none"
        elif s.type not in (int, float):
            shown = f"`{shown}`"
        rows.append(f"| {name} | {shown} | {s.allowed()} | {s.help} |")
    return "\n".join(rows) + "\n"


def _build(values: Mapping[str, Any], origin: str) -> Settings:
    unknown = sorted(set(values) - set(_BY_NAME))
    if unknown:
        raise ConfigError(f"{origin}: unknown setting(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(_BY_NAME))}")
    return Settings(**{k: _BY_NAME[k].coerce(v, origin) for k, v in values.items()})


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
    for key, raw in environ.items():
        if key.startswith(ENV_PREFIX) and key != f"{ENV_PREFIX}CONFIG":
            name = key[len(ENV_PREFIX):].lower()
            if name in _BY_NAME:
                values[name] = raw
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return _build(values, "settings")
