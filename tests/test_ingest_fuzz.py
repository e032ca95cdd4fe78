"""File ingest under hostile input: generated files checked against a reference model.

Every generated file holds rows whose fields are drawn from good values, known-bad values and
random text or bytes, mixed with known-good padding rows, in CSV, JSON lines or Parquet. A
reference model in this file (plain Python, independent of DuckDB) says which rows must be
stored, which must be rejected and on which field, and what the store must hold afterwards.
Each file must give either an :class:`InputError` naming the file, or a report that agrees with
the model; any other exception is a failure. The store is shared by all examples of a test, so
the data stored before each file (a baseline, then earlier files) must read back unchanged.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from forecaster.clock import MAX_YEAR, MIN_YEAR
from forecaster.errors import InputError
from forecaster.ingest_report import IngestReport
from forecaster.kinds import KIND_RANGE, REQUEST_NUMBERS, metric_kind
from forecaster.names import is_valid_name
from forecaster.sources.files import REQUEST_COLUMNS, TIME_UNITS, ReadSpec, ingest_files
from forecaster.store import Store

NOW = datetime(2026, 11, 26, 12, 0, 0)
EPOCH = datetime(1970, 1, 1)
LOW, HIGH = datetime(MIN_YEAR, 1, 1), datetime(MAX_YEAR + 1, 1, 1)
GOOD_SERVICES = ["alpha", "beta-1", "g.x_2"]
GOOD_METRICS = ["latency_p95_ms", "error_rate", "gpu_utilization", "queue_depth"]
UNITS = {"latency_p95_ms": "ms", "error_rate": "1", "gpu_utilization": "%", "queue_depth": "n"}
BASE = "base"
# A few times shared by many rows, so that rows collide on (series, time) within and across files.
HOT_TIMES = [datetime(2026, 11, 1) + timedelta(minutes=5 * i) for i in range(4)]
UNSURE = object()  # the reference cannot decide: either outcome is allowed, but must be right

Ref = Any  # a parsed value, None (must be refused) or UNSURE


# ---------------------------------------------------------------------------------------------
# Reference parsers: what the ingest promises, written without DuckDB.

_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,12}))?)?)?"
    r"(?: ?([Zz]|[+-]\d{2}(?::\d{2}(?::\d{2})?|\d{2})?)| ?(?i:utc|gmt))?")
# What the ingest trims from text: ASCII whitespace (tabs, and CRs from Windows line ends).
WS = " \t\n\x0b\x0c\r"
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_NOT_FINITE = re.compile(r"[+-]?(nan|inf|infinity)", re.IGNORECASE)


def ref_number(text: str) -> float | None:
    """A decimal number (what every tool writes); None for anything else."""
    text = text.strip(WS)
    if _NUMBER.fullmatch(text):
        return float(text)
    if _NOT_FINITE.fullmatch(text):
        return float(text)
    return None


def ref_time(text: str, us_per_unit: float | None) -> datetime | None:
    """ISO 8601 (offset to UTC, none or UTC/GMT is UTC) or an epoch number in a unit; None when
    not one."""
    text = text.strip(WS)
    if us_per_unit is not None:
        n = ref_number(text)
        if n is None or not math.isfinite(n) or abs(n * us_per_unit) >= 1e18:
            return None
        # exactly, as decimals (a double is a microsecond off for nanoseconds of today)
        with localcontext(prec=100):
            exact = Decimal(text).quantize(Decimal("1e-9"), ROUND_HALF_UP) * \
                Decimal(str(us_per_unit))
            us = int(exact.quantize(Decimal(1), ROUND_HALF_UP))
        try:
            return EPOCH + timedelta(microseconds=us)
        except OverflowError:  # beyond Python's years 1 to 9999: outside the range anyway
            return None
    m = _ISO.fullmatch(text)
    if not m:
        return None
    y, mo, d, h, mi, s, frac, off = m.groups()
    try:
        base = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0),
                        int((frac or "0")[:6].ljust(6, "0")))
    except ValueError:
        return None
    if off and off not in "Zz":
        digits = off[1:].replace(":", "")
        hours, minutes, seconds = int(digits[:2]), int(digits[2:4] or 0), int(digits[4:] or 0)
        if hours > 23 or minutes > 59 or seconds > 59:
            return None
        delta = timedelta(hours=hours, minutes=minutes, seconds=seconds)
        try:
            base = base - delta if off[0] == "+" else base + delta
        except OverflowError:  # year 1 or 9999 with an offset: outside the range anyway
            return None
    return base


def in_range(ts: datetime) -> bool:
    return LOW <= ts < HIGH


# ---------------------------------------------------------------------------------------------
# Generated cells: the raw value written to the file and the reference's reading of it.


@dataclass(frozen=True)
class Cell:
    raw: Any  # str for CSV; any JSON value for JSON lines; a typed value for Parquet
    ref: Ref  # what the ingest must read from it


def iso(ts: datetime, style: int, offset_minutes: int) -> str:
    """``ts`` (UTC) written in one of several ISO 8601 spellings (styles 0 to 7)."""
    local = ts + timedelta(minutes=offset_minutes)
    sep = "T" if style % 2 == 0 else " "
    body = local.strftime(f"%Y-%m-%d{sep}%H:%M:%S")
    if local.microsecond:
        # styles 6 and 7: 12 digits, as some exports write; read to the microsecond
        body += f".{local.microsecond:06d}" + (f"{ts.second * 7919 % 10**6:06d}"
                                               if style >= 6 else "")
    if style in (0, 1) and offset_minutes == 0:
        return body + "Z"
    if style in (2, 3) and offset_minutes == 0:
        return body
    if style in (6, 7) and offset_minutes == 0:
        return body + [" UTC", " GMT", " utc", "UTC"][ts.second % 4]
    sign = "+" if offset_minutes >= 0 else "-"
    hhmm = f"{sign}{abs(offset_minutes) // 60:02d}:{abs(offset_minutes) % 60:02d}"
    return body + hhmm + (":00" if style >= 6 else "")


nasty_text = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=30),
    st.integers(1000, 20_000).map(lambda n: ("ab\u00e9\u4e2d" * n)[:n]),
    st.sampled_from(["", " ", "null", "NULL", "None", "\x00", "a\x00b", "\ufeff", "\u202e",
                     "\"", "'", ",", "\n", "\r\n", "\\", "{}", "[]", "\ud800", "\udfff"]),
)


@dataclass
class Gen:
    """Randomness for one file: a seeded generator for its thousands of cells (fast), and what
    hypothesis made for it: a pool of nasty strings, junk bytes and a column name."""

    rng: random.Random
    texts: list[str]
    junk: bytes
    name: str

    def pick(self, options: Sequence[Any]) -> Any:
        return options[self.rng.randrange(len(options))]

    def nasty(self) -> str:
        return self.pick(self.texts)


@st.composite
def gens(draw: st.DrawFn) -> Gen:
    seed = draw(st.integers(0, 2**63))
    texts = draw(st.lists(nasty_text, min_size=1, max_size=8))
    junk = draw(st.binary(min_size=1, max_size=40))
    name = draw(st.one_of(st.sampled_from(["extra", "Value", "TS", "units", "value2"]),
                          st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)))
    # Seeded by everything drawn: hypothesis repeats single values (of 100 integers, about 27
    # differ) but never a whole example, so every file differs, and replays are exact.
    return Gen(random.Random(repr((seed, texts, junk, name))), texts, junk, name)


def good_time(g: Gen) -> datetime:
    if g.rng.random() < 0.25:
        return g.pick(HOT_TIMES)
    start, span = LOW + timedelta(days=1), HIGH - LOW - timedelta(days=2)
    ts = start + timedelta(microseconds=g.rng.randrange(span // timedelta(microseconds=1)))
    return ts.replace(microsecond=0) if g.rng.random() < 0.5 else ts


def iso_cell(g: Gen) -> Cell:
    ts = good_time(g)
    offset = 0 if g.rng.random() < 0.5 else g.rng.randint(-14 * 60, 14 * 60)
    text = iso(ts, g.rng.randrange(8), offset)
    if g.rng.random() < 0.1:  # padded, as by a tab-separated export or a Windows line end
        text = g.pick(["\t", "", " \t"]) + text + g.pick(["\r", "\t", " ", ""])
    return Cell(text, ts)


def epoch_cell(g: Gen, unit: str) -> Cell:
    us = (good_time(g) - EPOCH) // timedelta(microseconds=1)
    per = TIME_UNITS[unit]
    n = us // int(per) if per >= 1 else us * 1000  # integers: exact
    return Cell(str(n), EPOCH + timedelta(microseconds=n * int(per) if per >= 1 else us))


def mutate(text: str, g: Gen) -> str:
    """One random edit of a string (insert, delete or replace a character)."""
    if not text:
        return g.nasty()[:3]
    i = g.rng.randrange(len(text))
    op = g.rng.randrange(3)
    char = g.pick("0123456789-:+TZ .eE,x\u00e9")
    return text[:i] + (char if op else "") + text[i + (op != 1):]


def time_cell(g: Gen, unit: str | None) -> Cell:
    """Good, bad and unsure times; the reference value is None for a time that must be refused."""
    choice = g.rng.randrange(10)
    if choice <= 3:
        return epoch_cell(g, unit) if unit else iso_cell(g)
    if choice == 4:  # extreme years and offsets: valid ISO 8601, outside the allowed range
        return Cell(g.pick([
            "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z", "2200-01-01T00:00:00Z", "2199-12-31T23:59:59-14:00",
            "1970-01-01T00:00:00+00:01"]), None)
    if choice == 5:  # DuckDB's special words and impossible offsets are not ISO 8601
        return Cell(g.pick([
            "epoch", "infinity", "-infinity", "now", "today", "allballs",
            "2026-11-01T00:00:00+99:00", "2026-11-01T00:00:00-24:00", "2026-11-01T00:00:00+0260",
            "2026-02-30T00:00:00Z", "2026-11-01T25:00:00Z"]), None)
    if choice == 6:  # epoch numbers: huge, not finite, or given without a unit
        text = g.pick(["1e300", "-1e300", "nan", "inf", "-inf", "1e16", "-99999999999999999999",
                       "1793491200", "1.5"])
        ref = ref_time(text, TIME_UNITS[unit]) if unit else None
        return Cell(text, ref if ref is not None and in_range(ref) else None)
    if choice == 7:
        return Cell(g.pick(["", " ", "  "]), None)
    if choice == 8:
        base = epoch_cell(g, unit) if unit else iso_cell(g)
        return Cell(mutate(base.raw, g), UNSURE)
    return Cell(g.nasty(), UNSURE)


def _range_ok(value: float, metric: str) -> bool:
    lo, hi = KIND_RANGE[metric_kind(metric)]
    return math.isfinite(value) and (lo is None or value >= lo) and (hi is None or value <= hi)


def good_number(g: Gen, lo: float | None, hi: float | None) -> float:
    lo_, hi_ = (lo if lo is not None else -1e15), (hi if hi is not None else 1e15)
    choice = g.rng.randrange(4)
    if choice == 0:
        return float(g.pick([x for x in (lo_, hi_, 0.0, 5e-324, 1.0) if lo_ <= x <= hi_]))
    if choice == 1:
        return float(g.rng.randint(math.ceil(lo_), math.floor(min(hi_, 1e6))))
    return g.rng.uniform(lo_, hi_)


def value_cell(g: Gen, metric: str) -> Cell:
    """Good values (as text in several spellings), bad ones, and unsure random text."""
    lo, hi = KIND_RANGE[metric_kind(metric)]
    choice = g.rng.randrange(10)
    if choice <= 4:
        value = good_number(g, lo, hi)
        text = g.pick([repr(value), f"{value:.17g}", f"{value:.6e}", f" {value!r} ",
                       f"\t{value!r}", f"{value!r}\r", f"{value!r}\t"])
        return Cell(text, float(text))
    if choice == 5:
        return Cell(g.pick(["NaN", "nan", "-nan", "inf", "-inf", "Infinity", "-Infinity", "INF",
                            "1e400", "-1e400"]), None)
    if choice == 6:
        return Cell(g.pick(["", " ", "1,5", "0x10", "12x", "one", "1e", "--1", "\u0661\u0662"]),
                    None)
    if choice == 7:  # huge and out-of-range numbers
        text = g.pick(["1e308", "-1e308", "1.7976931348623157e308", "-0", "0", "101", "-1",
                       "1.0000001", "99999999999999999999999"])
        value = float(text)
        return Cell(text, value if _range_ok(value, metric) else None)
    if choice == 8:
        return Cell(mutate(repr(g.rng.random()), g), UNSURE)
    return Cell(g.nasty(), UNSURE)


_NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"


def name_cell(g: Gen, pool: list[str]) -> Cell:
    choice = g.rng.randrange(10)
    if choice <= 6:
        name = g.pick(pool)
        return Cell(g.pick([name, f" {name} "]), name)
    if choice == 7:
        return Cell(g.pick(["", " ", "a b", "x/y", "caf\u00e9", "a:b", "a" * 201, "\x00", "a\x00"]),
                    None)
    if choice == 8:
        text = "".join(g.pick(_NAME_CHARS) for _ in range(g.rng.randint(1, 12)))
        return Cell(text, text)
    text = g.nasty()
    stripped = text.strip(WS)
    return Cell(text, stripped if is_valid_name(stripped) else None)


# ---------------------------------------------------------------------------------------------
# Points files


@dataclass
class Row:
    ts: Cell
    service: Cell
    metric: Cell
    value: Cell
    unit: Cell


@dataclass
class PointsCase:
    fmt: str  # csv | json | parquet
    unit: str | None  # --time-unit
    columns: list[str]  # header, in order
    header_problem: str | None  # why the file as a whole must be refused, if it must
    rows: list[Row]
    corrupt: tuple[int, bytes] | None = None  # bytes spliced in at a position of the file
    pad: int = 0
    pad_seed: int = 0
    typed_parquet: bool = False
    surrogates: bool = False  # write lone surrogates into a CSV as they are (invalid UTF-8)


def point_row(g: Gen, unit: str | None) -> Row:
    metric = name_cell(g, GOOD_METRICS)
    metric_name = metric.ref if isinstance(metric.ref, str) else "queue_depth"
    unit_choice = g.rng.randrange(6)
    if unit_choice <= 2:
        unit_cell = Cell(UNITS.get(metric_name, "n"), UNITS.get(metric_name, "n"))
    elif unit_choice <= 4:
        unit_cell = Cell("", None)
    else:
        unit_cell = Cell("zz-other", "zz-other")
    return Row(time_cell(g, unit), name_cell(g, GOOD_SERVICES), metric,
               value_cell(g, metric_name), unit_cell)


@st.composite
def points_cases(draw: st.DrawFn) -> PointsCase:
    # File-level choices come from a seeded generator: hypothesis favours its simplest values,
    # which over a few dozen files would make "the first choice" most files.
    g = draw(gens())
    rng = g.rng
    fmt = rng.choice(["csv", "csv", "json", "parquet"])
    unit = rng.choice([None, None, None, "s", "ms", "us", "ns"])
    columns = ["ts", "service", "metric", "value"] + (["unit"] if rng.random() < 0.5 else [])
    rng.shuffle(columns)
    problem = None
    header = rng.random()
    if header < 0.06:  # a required column missing
        gone = rng.choice(["ts", "service", "metric", "value"])
        columns = [c for c in columns if c != gone]
        problem = "missing column"
    elif header < 0.12:  # an unknown column
        name = g.name
        if name not in ("ts", "service", "metric", "value", "unit"):
            columns.insert(rng.randrange(len(columns) + 1), name)
            problem = "unknown column"
    size = rng.choice([0, 5, 30, 100, 200])
    rows = [point_row(g, unit) for _ in range(size)]
    corrupt = None
    if rng.random() < 0.07:
        corrupt = (rng.randrange(10_000), g.junk)
    pad = rng.choice([0, 0, 0, 20, 1500])
    return PointsCase(fmt, unit, columns, problem, rows, corrupt, pad, rng.randrange(2**31),
                      rng.random() < 0.5, rng.random() < 0.1)


def pad_rows(case: PointsCase) -> list[Row]:
    """Known-good rows from a seed: cheap to make in bulk, and every one must be stored."""
    rng = random.Random(case.pad_seed)
    start = datetime(2026, 1, 1) + timedelta(minutes=rng.randrange(0, 500_000))
    rows = []
    for i in range(case.pad):
        ts = start + timedelta(minutes=i)
        value = round(rng.uniform(0, 100), 3)
        per = TIME_UNITS[case.unit] if case.unit else None
        if per is None:
            ts_cell = Cell(iso(ts, 0, 0), ts)
        else:
            n = ((ts - EPOCH) // timedelta(microseconds=1)) / per
            ts_cell = Cell(str(int(n)) if per >= 1 else str(int(n)), ts)
        rows.append(Row(ts_cell, Cell("pad", "pad"), Cell("gpu_utilization", "gpu_utilization"),
                        Cell(repr(value), value), Cell("%", "%")))
    return rows


def _parquet_column(name: str, cells: list[Cell], typed: bool) -> pa.Array:
    if typed and name == "value" and all(isinstance(c.ref, float) or c.ref is None
                                         for c in cells):
        values = []
        for c in cells:
            number = ref_number(c.raw) if isinstance(c.raw, str) else None
            values.append(number)
        return pa.array(values, pa.float64())
    if typed and name == "ts" and all(isinstance(c.ref, datetime) for c in cells):
        return pa.array([c.ref.replace(tzinfo=UTC) for c in cells], pa.timestamp("us", "UTC"))
    # Parquet strings are UTF-8: a lone surrogate cannot be written, so it becomes U+FFFD.
    return pa.array([(c.raw if isinstance(c.raw, str) else json.dumps(c.raw))
                     .encode("utf-8", "replace").decode() for c in cells], pa.string())


def write_points(path: Path, case: PointsCase, rows: list[Row]) -> tuple[list[Row], bool]:
    """Write the file; return the rows as the typed Parquet writer saw them (refs adjusted), and
    whether the file is not valid UTF-8 (a lone surrogate cannot be encoded)."""
    if case.fmt == "parquet":
        cells = {c: [getattr(r, c) if c in Row.__dataclass_fields__ else Cell("x", None)
                     for r in rows] for c in case.columns}
        table = pa.table({c: _parquet_column(c, cells[c], case.typed_parquet)
                          for c in case.columns})
        for c in case.columns:
            if not pa.types.is_string(table[c].type) and c == "value":
                # NaN and infinities stay refused; anything unreadable became a null.
                rows = [Row(r.ts, r.service, r.metric,
                            Cell(r.value.raw, r.value.ref if ref_number(r.value.raw) is not None
                                 else None), r.unit) for r in rows]
        pq.write_table(table, path)
        data = path.read_bytes()
        malformed = False
    elif case.fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")  # so that a bare \\r is quoted too
        writer.writerow(case.columns)
        for r in rows:
            writer.writerow([getattr(r, c).raw if c in Row.__dataclass_fields__ else "x"
                             for c in case.columns])
        data = buf.getvalue().encode("utf-8", "surrogatepass" if case.surrogates else "replace")
        malformed = data != buf.getvalue().encode("utf-8", "replace")
    else:
        lines = []
        for r in rows:
            obj = {c: (getattr(r, c).raw if c in Row.__dataclass_fields__ else "x")
                   for c in case.columns}
            if case.typed_parquet and "value" in obj and isinstance(r.value.ref, float):
                obj["value"] = r.value.ref  # a JSON number among strings: a mixed column
            if case.typed_parquet and case.unit and "ts" in obj and _NUMBER.fullmatch(
                    r.ts.raw.strip(WS)):
                raw = r.ts.raw.strip(WS)  # an epoch as a JSON number, exactly as written
                obj["ts"] = int(raw) if re.fullmatch(r"[+-]?\d+", raw) else float(raw)
            lines.append(json.dumps(obj))
        text = "\n".join(lines) + ("\n" if lines else "")
        # json.dumps writes a lone surrogate as an escape (\\ud800), which JSON parsers refuse.
        malformed = case.surrogates and bool(re.search(r"\\u[dD][89a-fA-F]", text))
        if not case.surrogates:
            text = re.sub(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}", "\ufffd", text)
        data = text.encode()
    if case.corrupt is not None:
        at, junk = case.corrupt
        at = at % (len(data) + 1)
        data = data[:at] + junk + data[at:]
    path.write_bytes(data)
    return rows, malformed


# ---------------------------------------------------------------------------------------------
# The model of the store


@dataclass
class Model:
    points: dict[tuple[str, str, datetime], float] = field(default_factory=dict)
    units: dict[tuple[str, str], str | None] = field(default_factory=dict)
    files: int = 0
    rows: int = 0
    refused_files: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    requests: Counter[tuple[Any, ...]] = field(default_factory=Counter)
    rejected: int = 0
    stored: int = 0


def stored_points(store: Store) -> dict[tuple[str, str, datetime], float]:
    out = {}
    for uid, ds, y in store.history().iter_rows():
        service, metric = uid.split(":", 1)
        out[(service, metric, ds)] = y
    return out


def assert_store_matches(store: Store, model: Model) -> None:
    got = stored_points(store)
    assert got.keys() == model.points.keys(), (
        f"missing {sorted(model.points.keys() - got.keys())[:5]}, "
        f"unexpected {sorted(got.keys() - model.points.keys())[:5]}")
    for key, value in model.points.items():
        assert math.isclose(got[key], value, rel_tol=1e-12, abs_tol=0.0), (key, got[key], value)
    units = {(s, m): u for s, m, u in store.series().select("service", "metric", "unit")
             .iter_rows()}
    for key, unit in model.units.items():
        assert units.get(key, "?") == unit, (key, units.get(key), unit)


def expected_outcome(row: Row, units: dict[tuple[str, str], str | None]) -> tuple[str, Any]:
    """("good", (key, value)), ("bad", field) or ("unsure", None) for one row."""
    ts = row.ts.ref
    if ts is UNSURE:
        return "unsure", None
    if ts is None or not in_range(ts):
        return "bad", "ts"
    for name in ("service", "metric"):
        if getattr(row, name).ref is None:
            return "bad", name
    service, metric = row.service.ref, row.metric.ref
    unit = row.unit.ref
    have = units.get((service, metric))
    if unit is not None and have is not None and unit != have:
        return "bad", "unit"
    value = row.value.ref
    if value is UNSURE:
        return "unsure", None
    if value is None or not _range_ok(value, metric):
        return "bad", "value"
    return "good", ((service, metric, ts), value)


def file_units(rows: list[Row], model: Model) -> dict[tuple[str, str], str | None]:
    """The unit of each series after this file: the stored one, else the first in sorted order."""
    units = dict(model.units)
    seen: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        if isinstance(r.service.ref, str) and isinstance(r.metric.ref, str) and r.unit.ref:
            seen.setdefault((r.service.ref, r.metric.ref), []).append(r.unit.ref)
    for key, found in seen.items():
        if units.get(key) is None:
            units[key] = min(found)
    return units


def check_points_file(store: Store, path: Path, case: PointsCase, model: Model) -> None:
    rows = case.rows + pad_rows(case)
    if "unit" not in case.columns:
        rows = [Row(r.ts, r.service, r.metric, r.value, Cell("", None)) for r in rows]
    rows, malformed = write_points(path, case, rows)
    if case.fmt == "json" and not rows and case.corrupt is None:
        case.header_problem = None  # an empty JSON lines file has no columns to be wrong
    spec = ReadSpec(time_unit=case.unit, max_errors=10**6)
    [result] = ingest_files(store, [path], "points", spec, NOW)
    model.files += 1
    model.rows += len(rows)
    if isinstance(result, InputError):
        model.refused_files += 1
        model.refusals[str(result).removeprefix(f"{path}: ")[:60]] += 1
        assert str(path) in str(result), result
        if malformed and case.header_problem is None and case.corrupt is None:
            assert ("UTF-8" if case.fmt == "csv" else "surrogate") in str(result), result
        elif case.header_problem is None and case.corrupt is None:
            pytest.fail(f"refused a well-formed {case.fmt} file: {result}")
        if case.header_problem is not None and case.corrupt is None:
            assert case.header_problem in str(result), result
        assert_store_matches(store, model)
        return
    assert isinstance(result, IngestReport)
    report = result
    assert report.rows == report.stored + report.updated + report.duplicates + report.rejected
    assert report.rejected == len(report.errors)
    assert all(e.source == str(path) and e.message and e.row >= 1 for e in report.errors)
    assert len({e.row for e in report.errors}) == len(report.errors)
    model.rejected += report.rejected
    model.stored += report.stored
    if case.corrupt is not None or malformed:
        # What the bytes did to the rows is unknown: only the other series must be intact.
        before = {k: v for k, v in model.points.items() if k[0] == BASE}
        got = stored_points(store)
        assert {k: v for k, v in got.items() if k[0] == BASE} == before
        model.points = got
        model.units = {(s, m): u for s, m, u in store.series()
                       .select("service", "metric", "unit").iter_rows()}
        return
    assert case.header_problem is None, f"accepted a file with {case.header_problem}"
    assert report.rows == len(rows)
    rejected = {e.row: e for e in report.errors}
    units = file_units(rows, model)
    accepted: dict[tuple[str, str, datetime], float] = {}
    for number, row in enumerate(rows, start=1):
        verdict, detail = expected_outcome(row, units)
        error = rejected.get(number)
        if verdict == "good":
            assert error is None, f"row {number} {row} was refused: {error}"
            key, value = detail
            accepted[key] = value
        elif verdict == "bad":
            assert error is not None, f"row {number} {row} was stored; expected a {detail} error"
            assert error.field == detail, (number, row, error)
        elif error is None:
            # Accepted although the reference was unsure: it must read as the reference does.
            ts = ref_time(row.ts.raw, TIME_UNITS[case.unit] if case.unit else None) \
                if isinstance(row.ts.raw, str) else None
            value = ref_number(row.value.raw) if isinstance(row.value.raw, str) else None
            assert ts is not None and in_range(ts), f"row {number}: stored time {row.ts.raw!r}"
            assert value is not None and _range_ok(value, row.metric.ref), \
                f"row {number}: stored value {row.value.raw!r}"
            accepted[(row.service.ref, row.metric.ref, ts)] = value
    new_keys = accepted.keys() - model.points.keys()
    assert report.stored == len(new_keys), (report, len(new_keys))
    changed = sum(1 for k in accepted.keys() & model.points.keys()
                  if model.points[k] != accepted[k])
    assert report.updated == changed, (report, changed)
    model.points.update(accepted)
    for service, metric, _ in accepted:
        model.units[(service, metric)] = units.get((service, metric))
    assert_store_matches(store, model)


def baseline(store: Store, tmp: Path, model: Model) -> None:
    """Known points stored before any fuzzed file: a series no fuzzed row names, and good ones."""
    lines = ["ts,service,metric,value,unit"]
    for i in range(200):
        ts = datetime(2026, 10, 1) + timedelta(minutes=5 * i)
        lines.append(f"{iso(ts, 0, 0)},{BASE},queue_depth,{i * 1.5},n")
        model.points[(BASE, "queue_depth", ts)] = i * 1.5
    for service in GOOD_SERVICES:
        for metric in GOOD_METRICS:
            for ts in HOT_TIMES[:2]:
                value = 0.25
                lines.append(f"{iso(ts, 0, 0)},{service},{metric},{value},{UNITS[metric]}")
                model.points[(service, metric, ts)] = value
            model.units[(service, metric)] = UNITS[metric]
    model.units[(BASE, "queue_depth")] = "n"
    path = write(tmp / "baseline.csv", "\n".join(lines) + "\n")
    [report] = ingest_files(store, [path], "points", ReadSpec(), NOW)
    assert isinstance(report, IngestReport) and report.rejected == 0
    assert_store_matches(store, model)


FUZZ = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.generate])


def test_fuzzed_points_files_keep_good_rows_and_earlier_data(tmp_path: Path) -> None:
    model = Model()
    with Store.open(tmp_path / "fuzz.duckdb", now=NOW) as store:
        baseline(store, tmp_path, model)
        counter = iter(range(10**9))

        @FUZZ
        @given(case=points_cases())
        def one_file(case: PointsCase) -> None:
            ext = {"csv": "csv", "json": "jsonl", "parquet": "parquet"}[case.fmt]
            check_points_file(store, tmp_path / f"f{next(counter)}.{ext}", case, model)

        one_file()
    print(f"\npoints fuzz: {model.files} files, {model.rows} rows, {model.refused_files} files "
          f"refused, {model.rejected} rows rejected, {model.stored} points stored; refusals: "
          f"{dict(model.refusals.most_common())}")
    assert model.files >= 100 and model.rows >= 25_000
    assert model.rejected >= 3_000 and model.refused_files >= 5 and model.stored >= 10_000


# ---------------------------------------------------------------------------------------------
# Request logs

# The order in which the ingest checks a request's fields: the first bad one is reported.
REQUEST_CHECK_ORDER = ["ts", "service", "status", "error", *REQUEST_NUMBERS]
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False, "TRUE": True, "False": False}


def status_cell(g: Gen) -> Cell:
    choice = g.rng.randrange(6)
    if choice <= 2:
        code = g.rng.randint(100, 599)
        return Cell(g.pick([str(code), f"{code}.0", f" {code}"]), float(code))
    if choice == 3:
        return Cell(g.pick(["99", "600", "200.5", "-200", "nan", "inf", "2e2x", "OK"]), None)
    if choice == 4:
        return Cell("", "missing")
    return Cell(g.nasty(), UNSURE)


def error_cell(g: Gen) -> Cell:
    choice = g.rng.randrange(5)
    if choice <= 2:
        text = g.pick(sorted(_BOOLEANS))
        return Cell(text, _BOOLEANS[text])
    if choice == 3:
        return Cell(g.pick(["maybe", "2", "-1", "yes please"]), None)
    return Cell("", "missing")


def request_number_cell(g: Gen, name: str) -> Cell:
    lo, hi, whole = REQUEST_NUMBERS[name]
    choice = g.rng.randrange(7)
    if choice <= 2:
        if whole:
            value = float(g.rng.randint(int(lo), int(min(hi, 2**40))))
            return Cell(str(int(value)), value)
        value = good_number(g, lo, hi)
        return Cell(repr(value), value)
    if choice == 3:
        return Cell(g.pick(["nan", "inf", "-inf", "1e400", "x", "1,5", repr(hi * 2 + 1),
                            repr(lo - 1)] + (["1.5"] if whole else [])), None)
    if choice == 4:
        return Cell("", "missing")
    if choice == 5:
        return Cell(mutate(repr(g.rng.uniform(lo, min(hi, 1e6))), g), UNSURE)
    return Cell(g.nasty(), UNSURE)


@dataclass
class RequestsCase:
    fmt: str
    columns: list[str]
    rows: list[dict[str, Cell]]
    surrogates: bool = False  # keep lone surrogates (invalid UTF-8 in CSV, refused JSON escapes)


@st.composite
def requests_cases(draw: st.DrawFn) -> RequestsCase:
    g = draw(gens())
    optional = [c for c in REQUEST_COLUMNS if c not in ("ts", "service")]
    chosen = g.rng.sample(optional, g.rng.randint(0, len(optional)))
    columns = ["ts", "service", *chosen]
    g.rng.shuffle(columns)
    rows = []
    for _ in range(g.pick([0, 5, 30, 100, 200])):
        if g.rng.random() < 0.5:  # a clean row: every field good
            row = {"ts": iso_cell(g), "service": Cell("alpha", "alpha")}
            for c in chosen:
                if c in REQUEST_NUMBERS:
                    lo, hi, whole = REQUEST_NUMBERS[c]
                    value = float(g.rng.randint(0, 10**6)) if whole else \
                        g.rng.uniform(lo, min(hi, 1e6))
                    row[c] = Cell(repr(int(value)) if whole else repr(value), value)
                else:
                    row[c] = {"status": Cell("200", 200.0), "error": Cell("false", False),
                              "request_id": Cell("r7", "r7")}[c]
            rows.append(row)
            continue
        row = {"ts": time_cell(g, None), "service": name_cell(g, GOOD_SERVICES)}
        for c in chosen:
            if c == "request_id":
                text = g.pick(["", "r1", "r|1", "a b", g.nasty()])
                row[c] = Cell(text, text)
            elif c == "status":
                row[c] = status_cell(g)
            elif c == "error":
                row[c] = error_cell(g)
            else:
                row[c] = request_number_cell(g, c)
        rows.append(row)
    # A few exact repeats: identical rows in one log are separate requests.
    if rows and g.rng.random() < 0.5:
        rows += [g.pick(rows) for _ in range(g.rng.randint(1, 5))]
    return RequestsCase(g.pick(["csv", "json"]), columns, rows, g.rng.random() < 0.1)


def request_verdict(row: dict[str, Cell]) -> tuple[str, str | None]:
    """("good", None), ("bad", field) or ("unsure", None) by the ingest's order of checks."""
    for name in REQUEST_CHECK_ORDER:
        cell = row.get(name)
        if cell is None or cell.ref == "missing":
            if name in ("ts", "service"):
                return "bad", name
            continue
        if cell.ref is UNSURE:
            return "unsure", None
        if name == "ts":
            if cell.ref is None or not in_range(cell.ref):
                return "bad", "ts"
        elif cell.ref is None:
            return "bad", name
    return "good", None


def request_identity(row: dict[str, Cell]) -> tuple[Any, ...]:
    """What makes a stored request the same request: every field as the ingest reads it."""
    def text(name: str) -> str | None:
        cell = row.get(name)
        return (cell.raw.strip(WS) or None) if cell is not None else None

    def number(name: str) -> float | None:
        raw = text(name)
        if raw is None:
            return None
        value = ref_number(raw)
        assert value is not None, f"{name} {raw!r} was accepted as a number"
        return value

    ts = ref_time(row["ts"].raw, None)
    assert ts is not None, f"time {row['ts'].raw!r} was accepted"
    error = text("error")
    return (text("service"), ts, text("request_id"), number("status"),
            None if error is None else _BOOLEANS[error],
            *(number(name) for name in REQUEST_NUMBERS))


def check_requests_file(store: Store, path: Path, case: RequestsCase, model: Model) -> None:
    if case.fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")  # so that a bare \\r is quoted too
        writer.writerow(case.columns)
        for row in case.rows:
            writer.writerow([row[c].raw for c in case.columns])
        data = buf.getvalue().encode("utf-8", "surrogatepass" if case.surrogates else "replace")
        malformed = data != buf.getvalue().encode("utf-8", "replace")
    else:
        text = "".join(json.dumps({c: row[c].raw for c in case.columns}) + "\n"
                       for row in case.rows)
        malformed = case.surrogates and bool(re.search(r"\\u[dD][89a-fA-F]", text))
        if not case.surrogates:
            text = re.sub(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}", "\ufffd", text)
        data = text.encode()
    path.write_bytes(data)
    before = store.counts()["requests"]
    [result] = ingest_files(store, [path], "requests", ReadSpec(max_errors=10**6), NOW)
    model.files += 1
    model.rows += len(case.rows)
    if isinstance(result, InputError):
        model.refused_files += 1
        assert malformed and str(path) in str(result), result
        assert ("UTF-8" if case.fmt == "csv" else "surrogate") in str(result), result
        assert store.counts()["requests"] == before
        return
    report = result
    assert report.rows == len(case.rows)
    assert report.requests_stored is not None
    assert report.rows == report.requests_stored + report.duplicates + report.rejected
    assert report.rejected == len(report.errors)
    assert store.counts()["requests"] == before + report.requests_stored
    model.rejected += report.rejected
    model.stored += report.requests_stored
    rejected = {e.row: e for e in report.errors}
    in_file: Counter[tuple[Any, ...]] = Counter()
    for number, row in enumerate(case.rows, start=1):
        verdict, name = request_verdict(row)
        error = rejected.get(number)
        if verdict == "good":
            assert error is None, f"row {number} {row} was refused: {error}"
        elif verdict == "bad":
            assert error is not None and error.field == name, (number, row, error, name)
            assert error.message and str(path) in str(error)
        if error is None:
            in_file[request_identity(row)] += 1
    # n identical rows in one log are n requests; a log repeating stored ones adds none of them
    new = sum(max(0, n - model.requests[key]) for key, n in in_file.items())
    assert report.requests_stored == new, (report.summary(), new)
    for key, n in in_file.items():
        model.requests[key] = max(model.requests[key], n)
    # The roll-up never makes a point outside its metric's range, and earlier data is intact.
    got = stored_points(store)
    assert {k: v for k, v in got.items() if k[0] == BASE} == \
        {k: v for k, v in model.points.items() if k[0] == BASE}
    for (_, metric, _), value in got.items():
        assert _range_ok(value, metric), (metric, value)


def test_fuzzed_request_logs_keep_good_rows_and_earlier_data(tmp_path: Path) -> None:
    model = Model()
    with Store.open(tmp_path / "fuzz.duckdb", now=NOW) as store:
        baseline(store, tmp_path, model)
        counter = iter(range(10**9))

        @settings(FUZZ, max_examples=50)
        @given(case=requests_cases())
        def one_log(case: RequestsCase) -> None:
            ext = {"csv": "csv", "json": "jsonl"}[case.fmt]
            check_requests_file(store, tmp_path / f"r{next(counter)}.{ext}", case, model)

        one_log()
    print(f"\nrequest-log fuzz: {model.files} files, {model.rows} rows, {model.refused_files} "
          f"files refused, {model.rejected} rows rejected, {model.stored} requests stored")
    assert model.files >= 50 and model.rows >= 2_500
    assert model.rejected >= 1_000 and model.stored >= 1_000


# ---------------------------------------------------------------------------------------------
# Defects the fuzzers found, one deterministic test each


def _one(store: Store, path: Path, kind: str = "points",
         spec: ReadSpec | None = None) -> IngestReport:
    [result] = ingest_files(store, [path], kind, spec or ReadSpec(), NOW)
    assert isinstance(result, IngestReport), result
    return result


def test_found_a_point_with_and_without_a_unit_was_stored_twice(
    store: Store, tmp_path: Path
) -> None:
    # Rows of one series with a unit and without one were two keys, and a (series, time) given
    # by both became two points.
    path = write(tmp_path / "u.csv", "ts,service,metric,value,unit\n"
                 "2026-11-01T00:00:00Z,a,m,1,ms\n2026-11-01T00:00:00Z,a,m,2,\n"
                 "2026-11-01T00:05:00Z,a,m,3,\n2026-11-01T00:05:00Z,a,m,4,ms\n")
    report = _one(store, path)
    assert (report.stored, report.duplicates) == (2, 2)
    assert store.history()["y"].to_list() == [2.0, 4.0]  # the last row of each time wins
    assert store.counts()["points"] == 2


def test_found_a_series_stored_without_a_unit_never_took_one(
    store: Store, tmp_path: Path
) -> None:
    # A unit given after the series was stored without one was checked against but not kept,
    # so a later file could give another unit.
    _one(store, write(tmp_path / "a.csv", "ts,service,metric,value\n2026-11-01T00:00:00Z,a,m,1\n"))
    _one(store, write(tmp_path / "b.csv", "ts,service,metric,value,unit\n"
                      "2026-11-01T00:05:00Z,a,m,2,ms\n"))
    assert store.series()["unit"].to_list() == ["ms"]
    report = _one(store, write(tmp_path / "c.csv", "ts,service,metric,value,unit\n"
                               "2026-11-01T00:10:00Z,a,m,3,s\n"))
    assert report.rejected == 1 and report.errors[0].field == "unit"


def test_found_json_numbers_written_as_strings_in_a_mixed_field_were_refused(
    store: Store, tmp_path: Path
) -> None:
    # A JSON field holding both 7 and "8" was read with its quotes: '"8"' is not a number.
    path = write(tmp_path / "m.jsonl",
                 '{"ts": "2026-11-01T00:00:00Z", "service": "a", "metric": "m", "value": 7}\n'
                 '{"ts": "2026-11-01T00:05:00Z", "service": "a", "metric": "m", "value": "8"}\n'
                 '{"ts": 1793491800, "service": "a", "metric": "m", "value": "x"}\n')
    report = _one(store, path)
    assert (report.stored, report.rejected) == (2, 1)
    assert report.errors[0].message.startswith("cannot read '1793491800' as a time")
    assert store.history()["y"].to_list() == [7.0, 8.0]
    with_unit = _one(store, path, spec=ReadSpec(time_unit="s"))
    assert [(e.row, e.field) for e in with_unit.errors] == [(1, "ts"), (2, "ts"), (3, "value")]
    assert "'x' is not a number" in with_unit.errors[2].message


@pytest.mark.parametrize("text", [
    "epoch", "infinity", "2026-11-01T00:00:00+99:00", "2026-11-01T00:00:00-24:00",
    "2026-11-01 00:00:00 Europe/Paris"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_found_words_and_impossible_offsets_were_read_as_times(
    store: Store, tmp_path: Path, text: str, fmt: str
) -> None:
    # DuckDB's parser takes 'epoch' (1970-01-01) and offsets of 99 hours; a JSON lines reader
    # also guessed the type of the field itself, so every row of the file was taken.
    if fmt == "csv":
        path = write(tmp_path / "t.csv", f"ts,service,metric,value\n{text},a,m,1\n")
    else:
        path = write(tmp_path / "t.jsonl",
                     json.dumps({"ts": text, "service": "a", "metric": "m", "value": 1}) + "\n")
    report = _one(store, path)
    assert report.rejected == 1 and report.errors[0].field == "ts", report
    # a zone name is named as the reason; anything else gets the ISO 8601 hint
    reason = "time-zone name is not understood" if "/" in text else "ISO 8601"
    assert reason in report.errors[0].message
    assert store.counts()["points"] == 0


def test_found_epoch_times_of_the_last_years_allowed_were_unreadable(
    store: Store, tmp_path: Path
) -> None:
    # An overflow guard at 7e15 microseconds (the year 2191) refused allowed times as unreadable.
    seconds = int((datetime(2199, 6, 1) - EPOCH).total_seconds())
    path = write(tmp_path / "e.csv", f"ts,service,metric,value\n{seconds},a,m,1\n"
                 f"{seconds * 10},a,m,2\n")
    report = _one(store, path, spec=ReadSpec(time_unit="s"))
    assert report.stored == 1
    assert store.history()["ds"].to_list() == [datetime(2199, 6, 1)]
    assert "is outside" in report.errors[0].message


def test_found_a_damaged_parquet_file_raised_a_database_error(
    store: Store, tmp_path: Path
) -> None:
    # The footer was readable, a page was not: the error came from DuckDB mid-ingest.
    path = tmp_path / "d.parquet"
    pa_table = pa.table({"ts": [datetime(2026, 11, 1)] * 1000, "service": ["a"] * 1000,
                         "metric": ["m"] * 1000, "value": [float(i) for i in range(1000)]})
    pq.write_table(pa_table, path, compression="none")
    data = bytearray(path.read_bytes())
    data[20:60] = b"\xff" * 40
    path.write_bytes(bytes(data))
    [result] = ingest_files(store, [path], "points", ReadSpec(), NOW)
    assert isinstance(result, InputError) and str(path) in str(result)
    assert "cannot read" in str(result)
    assert store.counts()["points"] == 0


def test_found_an_empty_json_lines_file_had_an_unknown_column_json(
    store: Store, tmp_path: Path
) -> None:
    for name in ("e.jsonl", "e.csv", "e.parquet"):
        report = _one(store, write(tmp_path / name, "\n" if name.endswith("jsonl") else ""))
        assert (report.rows, report.stored, report.rejected) == (0, 0, 0)
    [refused] = ingest_files(store, [write(tmp_path / "l.jsonl", "[1, 2]\n\"x\"\n")], "points",
                             ReadSpec(), NOW)
    assert isinstance(refused, InputError) and "each line must be one JSON object" in str(refused)
    [directory] = ingest_files(store, [tmp_path], "points", ReadSpec(fmt="csv"), NOW)
    assert isinstance(directory, InputError) and "not a file" in str(directory)


def test_found_a_csv_that_is_not_utf8_was_refused_without_saying_why(
    store: Store, tmp_path: Path
) -> None:
    # DuckDB's sniffer said only that it could not detect the dialect.
    path = tmp_path / "latin1.csv"
    path.write_bytes("ts,service,metric,value\n2026-11-01T00:00:00Z,caf\u00e9,m,1\n"
                     .encode("latin-1"))
    [result] = ingest_files(store, [path], "points", ReadSpec(), NOW)
    assert isinstance(result, InputError)
    assert "not UTF-8 text: line 2" in str(result) and str(path) in str(result)


def test_found_requests_differing_in_which_field_is_missing_were_one_request(
    store: Store, tmp_path: Path
) -> None:
    # The fingerprint joined fields with '|' skipping missing ones, so (latency 5, no ttft) and
    # (no latency, ttft 5) were "the same request" and the second log's was dropped.
    header = "ts,service,request_id,latency_ms,ttft_ms\n"
    first = write(tmp_path / "a.csv", header + "2026-11-01T00:00:00Z,s,x,,5\n")
    second = write(tmp_path / "b.csv", header + "2026-11-01T00:00:00Z,s,x,5,\n")
    assert _one(store, first, "requests").requests_stored == 1
    assert _one(store, second, "requests").requests_stored == 1
    assert store.counts()["requests"] == 2
    # and the same logs again change nothing
    both = write(tmp_path / "c.csv", header + "2026-11-01T00:00:00Z,s,x,,5\n"
                 "2026-11-01T00:00:00Z,s,x,5,\n")
    again = _one(store, both, "requests")
    assert (again.requests_stored, again.duplicates) == (0, 2)


def test_found_numbers_with_two_signs_were_read_as_numbers(store: Store, tmp_path: Path) -> None:
    # DuckDB's cast reads '+-5' as -5 and '1_000' as 1000.
    path = write(tmp_path / "n.csv", "ts,service,metric,value\n"
                 "2026-11-01T00:00:00Z,a,m,+-5\n2026-11-01T00:05:00Z,a,m,1_000\n"
                 "2026-11-01T00:10:00Z,a,m,-.5e1\n")
    report = _one(store, path)
    assert [(e.row, e.field) for e in report.errors] == [(1, "value"), (2, "value")]
    assert "'+-5' is not a number" in report.errors[0].message
    assert store.history()["y"].to_list() == [-5.0]
    log = write(tmp_path / "r.csv", "ts,service,latency_ms,status\n"
                "2026-11-01T00:00:00Z,s,+-5,200\n2026-11-01T00:00:01Z,s,5,+-200\n")
    assert [e.field for e in _one(store, log, "requests").errors] == ["latency_ms", "status"]


def test_found_nanosecond_epochs_were_a_microsecond_off(store: Store, tmp_path: Path) -> None:
    # Read through a double (53 bits), 1.8e18 ns could not say its last microsecond.
    ts = datetime(2026, 11, 1, 0, 0, 0, 123457)
    ns = (ts - EPOCH) // timedelta(microseconds=1) * 1000
    path = write(tmp_path / "ns.csv", f"ts,service,metric,value\n{ns},a,m,1\n{ns + 499},a,m,2\n")
    pa_path = tmp_path / "ns.parquet"
    pq.write_table(pa.table({"ts": pa.array([ns + 1500], pa.int64()), "service": ["b"],
                             "metric": ["m"], "value": [1.0]}), pa_path)
    _one(store, path, spec=ReadSpec(time_unit="ns"))
    _one(store, pa_path, spec=ReadSpec(time_unit="ns"))
    assert store.history()["ds"].to_list() == [ts, ts + timedelta(microseconds=2)]
    assert store.history(service="a")["y"].to_list() == [2.0]  # ns + 499 is the same microsecond


@pytest.mark.parametrize("kind", ["points", "requests"])
def test_found_values_padded_with_tabs_or_carriage_returns_were_refused(
    store: Store, tmp_path: Path, kind: str
) -> None:
    # Only spaces were trimmed: '12\t', '\t12' and '12\r' (a Windows line end inside a quoted
    # field or a JSON string) were "not a number", and such times "not a time".
    rows = [("\t2026-11-01T00:00:00Z", "12\t"), ("2026-11-01T00:05:00Z\r", "\t13"),
            ("2026-11-01 00:10:00 UTC\t", "14\r")]
    if kind == "points":
        path = tmp_path / "p.jsonl"
        path.write_text("".join(json.dumps({"ts": ts, "service": "a\t", "metric": "m",
                                            "value": value}) + "\n" for ts, value in rows))
    else:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")  # quotes the fields holding a CR
        writer.writerows([["ts", "service", "latency_ms", "status"],
                          *([ts, "a", value, "200\r"] for ts, value in rows)])
        path = write(tmp_path / "r.csv", buf.getvalue())
    report = _one(store, path, kind)
    assert report.rejected == 0, report.errors
    times = [datetime(2026, 11, 1, 0, m) for m in (0, 5, 10)]
    if kind == "points":
        assert store.history()["ds"].to_list() == times
        assert store.history(service="a")["y"].to_list() == [12.0, 13.0, 14.0]
    else:
        got = store.cursor().sql("SELECT ts, latency_ms, is_error FROM requests ORDER BY ts")
        assert got.fetchall() == [(t, v, False) for t, v in zip(times, (12.0, 13.0, 14.0),
                                                                strict=True)]
