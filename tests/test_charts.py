"""The report's charts: each element drawn and named, readable, self-contained, small SVGs."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from forecaster.report import charts
from forecaster.report.charts import (
    URGENCY_COLOURS,
    ForecastBand,
    Interval,
    LoadCurve,
    ServiceHeadroom,
    demand_chart,
    envelope,
    fan_chart,
    headroom_chart,
    load_curve_chart,
    mark_points,
    to_svg,
)

ROOT = Path(__file__).resolve().parent.parent
SVG = "{http://www.w3.org/2000/svg}"
NOW = datetime(2026, 11, 26)
STEP = timedelta(minutes=5)
WEEKS_8 = 8 * 7 * 288  # 16,128 five-minute points

# A warning from matplotlib while drawing (a singular axis, a locator out of intervals) is a chart
# that reads badly: fail on it.
pytestmark = pytest.mark.filterwarnings("error")


def history(n: int = WEEKS_8, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """A latency-like series ending at NOW: daily season, noise, one spike."""
    rng = np.random.default_rng(seed)
    ts = np.array([NOW - STEP * (n - i) for i in range(n)], dtype="datetime64[us]")
    day = np.arange(n) / 288
    values = 300 * (1 + 0.3 * np.sin(2 * np.pi * day)) * np.exp(rng.normal(0, 0.08, n))
    values[n // 2] = 1400.0  # one spike: it must survive the downsampling
    return ts, values


def band(days: int = 14, start: float = 400.0) -> ForecastBand:
    hours = np.arange(1, days * 24 + 1)
    ds = np.array([NOW + timedelta(hours=int(h)) for h in hours], dtype="datetime64[us]")
    mid = start * np.exp(0.03 * hours / 24)
    spread = 0.05 + 0.2 * np.sqrt(hours / hours[-1])
    return ForecastBand(ds=ds, p50=mid, p10=mid * np.exp(-1.28 * spread),
                        p90=mid * np.exp(1.28 * spread), p25=mid * np.exp(-0.67 * spread),
                        p75=mid * np.exp(0.67 * spread))


CROSSING = Interval(datetime(2026, 12, 3), datetime(2026, 12, 5, 6), datetime(2026, 12, 8))


def full_fan(**overrides: object) -> Figure:
    ts, values = history()
    args: dict[str, object] = {
        "title": "embed-batch · latency p95", "unit": "ms", "quantity": "latency p95",
        "forecast": band(), "limit": 1500.0, "crossing": CROSSING, "now": NOW}
    args.update(overrides)
    return fan_chart(ts, values, **args)  # type: ignore[arg-type]


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def drawn_ids(svg: str) -> dict[str, int]:
    """Each named element (an artist's gid) and how many shapes it draws."""
    out: dict[str, int] = {}
    for element in parse(svg).iter():
        name = element.get("id")
        if name is not None:
            shapes = sum(1 for e in element.iter() if e.tag in (f"{SVG}path", f"{SVG}use"))
            out[name] = out.get(name, 0) + shapes
    return out


def legend_texts(fig: Figure) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def assert_self_contained(svg: str) -> None:
    assert not svg.lstrip().startswith("<?xml") and "<!DOCTYPE" not in svg
    assert 'href="http' not in svg and "@font-face" not in svg and "url(http" not in svg
    assert "<text" not in svg, "glyphs must be paths: the SVG must not need a font"
    assert "<metadata" not in svg  # no date, no creator: nothing but the drawing
    parse(svg)


def assert_readable(fig: Figure) -> None:
    """Every text at least 9 pt, everything drawn inside the figure, the legend beside the plot."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    for text in fig.findobj(Text):
        if text.get_visible() and text.get_text():
            assert float(text.get_fontsize()) >= 9, (text.get_text(), text.get_fontsize())
    drawn = fig.get_tightbbox(renderer)  # what is drawn, ticks outside the view left out
    page = fig.bbox_inches
    tolerance = 0.02  # inches
    assert drawn.x0 >= page.x0 - tolerance and drawn.x1 <= page.x1 + tolerance, drawn
    assert drawn.y0 >= page.y0 - tolerance and drawn.y1 <= page.y1 + tolerance, drawn
    axes = fig.axes[0].get_window_extent(renderer)
    for legend in fig.legends:
        assert legend.get_window_extent(renderer).x0 >= axes.x1, "the legend covers the plot"


# --- the fan chart -----------------------------------------------------------------------------


def test_the_fan_chart_draws_and_names_every_element() -> None:
    fig = full_fan()
    texts = legend_texts(fig)
    assert texts[:4] == ["history", "forecast p10–p90", "forecast p25–p75", "forecast p50"]
    assert "limit: breached above 1,500 ms" in texts
    assert "now: 26 Nov 00:00 UTC" in texts
    assert "crossing p10–p90 (UTC):\n03 Dec 00:00 – 08 Dec 00:00" in texts
    assert "crossing p50: 05 Dec 06:00 UTC" in texts
    ax = fig.axes[0]
    assert ax.get_xlabel() == "time (UTC)" and ax.get_ylabel() == "latency p95 (ms)"
    assert ax.get_title(loc="left") == "embed-batch · latency p95"
    svg = to_svg(fig)
    assert_self_contained(svg)
    ids = drawn_ids(svg)
    for element in ("history", "forecast_p10_p90", "forecast_p25_p75", "forecast_p50", "limit",
                    "now", "crossing_span", "crossing_p50", "crossing_mark"):
        assert ids.get(element, 0) >= 1, f"{element} is not drawn"
    assert_readable(fig)


def test_the_limit_reads_its_direction_and_sits_at_its_value() -> None:
    ts, values = history(500)
    fig = fan_chart(ts, values / 1000, title="quality", unit="1", quantity="quality score",
                    limit=0.8, direction="below")
    assert "limit: breached below 0.8" in legend_texts(fig)
    assert fig.axes[0].get_ylabel() == "quality score"  # a ratio has no unit to show
    (line,) = [x for x in fig.axes[0].lines if x.get_gid() == "limit"]
    assert np.allclose(np.asarray(line.get_ydata(), dtype=float), 0.8)


def test_parts_that_are_missing_are_neither_drawn_nor_listed() -> None:
    ts, values = history(2000)
    fig = fan_chart(ts, values, title="t", unit="ms")
    assert legend_texts(fig) == ["history"]
    ids = drawn_ids(to_svg(fig))
    assert "history" in ids
    assert not {"forecast_p50", "limit", "now", "crossing_span"} & set(ids)


def test_a_crossing_beyond_the_horizon_is_shaded_to_the_horizon() -> None:
    fig = full_fan(crossing=Interval(datetime(2026, 12, 3), None, None))
    assert "crossing p10–p90 (UTC):\n03 Dec 00:00 – after the horizon" in legend_texts(fig)
    (span,) = [p for p in fig.axes[0].patches if p.get_gid() == "crossing_span"]
    horizon_end = matplotlib.dates.date2num(np.datetime64(NOW + timedelta(days=14), "us"))
    right = span.get_x() + span.get_width()  # type: ignore[attr-defined]
    assert right == pytest.approx(horizon_end)
    assert "crossing_p50" not in drawn_ids(to_svg(fig))


def test_times_are_utc_whatever_their_zone() -> None:
    base = datetime(2026, 11, 1, 12)
    plus_two = timezone(timedelta(hours=2))
    naive = fan_chart([base, base + STEP], [1.0, 2.0], title="t", unit="ms", now=base)
    aware = fan_chart([(base + timedelta(hours=2)).replace(tzinfo=plus_two),
                       (base + STEP + timedelta(hours=2)).replace(tzinfo=plus_two)],
                      [1.0, 2.0], title="t", unit="ms",
                      now=(base + timedelta(hours=2)).replace(tzinfo=plus_two))
    for a, b in zip(naive.axes[0].lines, aware.axes[0].lines, strict=True):
        assert np.allclose(np.asarray(a.get_xdata(), dtype=float),
                           np.asarray(b.get_xdata(), dtype=float))
    assert "now: 01 Nov 12:00 UTC" in legend_texts(aware)


@pytest.mark.parametrize("case", ["empty", "single", "flat", "all_nan", "log_nonpositive",
                                  "forecast_only", "unsorted_with_gaps", "crossing_without_limit"])
def test_edge_cases_draw_something_sensible(case: str) -> None:
    base = datetime(2026, 11, 1)
    ts = [base + STEP * i for i in range(300)]
    if case == "empty":
        fig = fan_chart([], [], title="t", unit="ms", limit=5.0)
        assert any(t.get_text() == "no data" for t in fig.axes[0].texts)
    elif case == "single":
        fig = fan_chart([base], [3.0], title="t", unit="ms")
        low, high = fig.axes[0].get_xlim()
        assert high - low == pytest.approx(1.0)  # a day around the point, not years
        (line,) = fig.axes[0].lines
        assert line.get_marker() == "o"  # a lone point is a marker: a line of one is invisible
    elif case == "flat":
        fig = fan_chart(ts, np.full(300, 0.02), title="t", unit="1", limit=0.05, log_scale=True)
    elif case == "all_nan":
        fig = fan_chart(ts, np.full(300, np.nan), title="t", unit="ms")
        assert any(t.get_text() == "no data" for t in fig.axes[0].texts)
    elif case == "log_nonpositive":
        values = np.linspace(-5, 100, 300)
        fig = fan_chart(ts, values, title="t", unit="ms", log_scale=True, limit=50.0)
        assert fig.axes[0].get_ylim()[0] > 0
    elif case == "forecast_only":
        fig = fan_chart([], [], title="t", unit="1/s", forecast=band(), now=NOW)
        assert fig.axes[0].get_ylabel() == "value (per second)"
        assert not fig.axes[0].texts
    elif case == "unsorted_with_gaps":
        values = np.linspace(1, 2, 300)
        values[50:60] = np.nan
        order = np.random.default_rng(1).permutation(300)
        fig = fan_chart(np.array(ts, dtype="datetime64[us]")[order], values[order], title="t",
                        unit="ms")
    else:
        fig = fan_chart(ts, np.ones(300), title="t", unit="ms",
                        crossing=Interval(base + timedelta(hours=3), base + timedelta(hours=5)))
    svg = to_svg(fig)
    assert_self_contained(svg)
    assert_readable(fig)


# --- size: many points stay a small SVG ------------------------------------------------------


def test_eight_weeks_of_five_minute_points_make_a_small_svg() -> None:
    fig = full_fan()
    (line,) = [x for x in fig.axes[0].lines if x.get_gid() == "history"]
    assert np.asarray(line.get_xdata()).size <= charts.DEFAULT_MAX_POINTS + 10
    assert np.nanmax(np.asarray(line.get_ydata(), dtype=float)) == 1400.0  # the spike survives
    svg = to_svg(fig)
    assert len(svg.encode()) < 300_000
    # What the downsampling saves, beyond matplotlib's own path simplification.
    whole = to_svg(full_fan(max_points=10 * WEEKS_8))
    assert history_bytes(whole) > 3 * history_bytes(svg)


def history_bytes(svg: str) -> int:
    (group,) = [e for e in parse(svg).iter() if e.get("id") == "history"]
    return len(ET.tostring(group))


def test_the_envelope_keeps_each_buckets_lowest_and_highest_point() -> None:
    rng = np.random.default_rng(3)
    x = np.arange(10_000, dtype=float)
    y = rng.normal(size=10_000)
    xs, ys, isolated = envelope(x, y, 200)
    assert len(xs) <= 200 and not isolated.any()
    assert np.all(np.diff(xs) > 0)  # in time order
    for b in range(100):
        inside = (xs >= b * 100) & (xs < (b + 1) * 100)
        chunk = y[b * 100:(b + 1) * 100]
        assert set(ys[inside]) == {chunk.min(), chunk.max()}


def test_the_envelope_breaks_the_line_at_missing_values_and_pauses() -> None:
    x = np.arange(20, dtype=float)
    y = np.ones(20)
    y[5] = np.nan
    x[12:] += 30  # a pause of 30 steps
    xs, ys, isolated = envelope(x, y, 1000)
    assert np.isnan(ys).sum() == 2  # one break at the NaN, one at the pause
    assert len(xs) == 19 + 2
    x = np.r_[np.arange(10.0), 50.0]
    xs, ys, isolated = envelope(x, np.ones(11), 1000)
    assert np.isnan(ys[10]) and isolated.tolist() == [False] * 11 + [True]  # a lone last point


# --- the other charts --------------------------------------------------------------------------


def test_the_demand_chart_sets_demand_against_learned_and_stated_capacity() -> None:
    ts, values = history()
    fig = demand_chart(ts, values / 3, title="embed-batch · demand", quantity="requests",
                       forecast=band(start=150.0), capacity=Interval(410.0, 432.0, 455.0),
                       stated_capacity=460.0, now=NOW,
                       saturation=Interval(datetime(2026, 12, 1), datetime(2026, 12, 2),
                                           datetime(2026, 12, 4)))
    texts = legend_texts(fig)
    assert "capacity (learned) p10–p90:\n410 – 455/s" in texts
    assert "capacity (learned) p50: 432/s" in texts
    assert "stated capacity 460/s" in texts
    assert "saturation p50: 02 Dec 00:00 UTC" in texts
    assert fig.axes[0].get_ylabel() == "requests (per second)"
    (mark,) = [x for x in fig.axes[0].lines if x.get_gid() == "saturation_mark"]
    assert np.asarray(mark.get_ydata(), dtype=float).tolist() == [432.0]  # on the capacity
    svg = to_svg(fig)
    assert_self_contained(svg)
    ids = drawn_ids(svg)
    for element in ("history", "forecast_p50", "capacity_band", "capacity", "stated_capacity",
                    "saturation_span", "saturation_p50", "now"):
        assert ids.get(element, 0) >= 1, element
    assert len(svg.encode()) < 300_000
    assert_readable(fig)


def load_latency(n: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    load = rng.uniform(30, 450, n)
    latency = 250 * (1 + (load / 460) ** 8 * 5) * np.exp(rng.normal(0, 0.1, n))
    return load, latency


def test_the_load_curve_chart_draws_history_curve_limit_and_capacity() -> None:
    load, latency = load_latency(8064)
    grid = np.linspace(30, 500, 50)
    fit = 250 * (1 + (grid / 460) ** 8 * 5)
    fig = load_curve_chart(load, latency, title="embed-batch · load and latency p95",
                           load_name="requests", latency_name="latency p95",
                           curve=LoadCurve(grid, fit, fit * 0.9, fit * 1.1), limit=1500.0,
                           capacity=Interval(430.0, 445.0, 460.0), stated_capacity=460.0)
    texts = legend_texts(fig)
    assert texts[0] == "history (darker: more points)"
    assert {"fitted curve p10–p90", "fitted curve p50", "limit 1,500 ms",
            "effective capacity p10–p90:\n430 – 460/s", "effective capacity p50: 445/s",
            "stated capacity 460/s"} <= set(texts)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "requests (per second)" and ax.get_ylabel() == "latency p95 (ms)"
    # the curve runs to 3,700 ms at 500/s; the axis stays on the data and the limit
    assert ax.get_ylim()[1] <= 1.3 * 1500 + 0.3 * 1500
    svg = to_svg(fig)
    assert_self_contained(svg)
    ids = drawn_ids(svg)
    for element in ("history", "curve_band", "curve", "limit", "effective_capacity_band",
                    "effective_capacity", "stated_capacity"):
        assert ids.get(element, 0) >= 1, element
    assert len(svg.encode()) < 300_000
    assert_readable(fig)


def test_a_runaway_curve_moves_neither_end_of_the_value_axis_off_the_data() -> None:
    """A curve past its wall reaches millions of ms: the axis stays on the history and the
    limit, at the bottom (no negative latencies) as at the top."""
    load, latency = load_latency(2000)
    grid = np.linspace(30, 470, 60)
    fit = 250 * (1 + (grid / 460) ** 8 * 5) / np.maximum(1 - grid / 470, 1e-4) ** 2
    fig = load_curve_chart(load, latency, title="t", limit=1500.0,
                           curve=LoadCurve(grid, fit, fit * 0.9, fit * 1.1))
    low, high = fig.axes[0].get_ylim()
    assert fit.max() > 1e6
    assert high <= latency.max() + 0.3 * latency.max()
    assert 0.5 * latency.min() < low < latency.min()
    assert_readable(fig)


def test_few_load_points_are_a_scatter_and_a_log_axis_drops_nonpositive_ones() -> None:
    load, latency = load_latency(40)
    latency[:5] = 0.0
    fig = load_curve_chart(load, latency, title="t", log_scale=True,
                           capacity=Interval(400.0, 420.0, None))
    (points,) = fig.axes[0].collections[:1]
    assert len(points.get_offsets()) == 35  # type: ignore[arg-type]
    assert "effective capacity p10–p90:\n400 – beyond the data" in legend_texts(fig)
    assert_self_contained(to_svg(fig))
    empty = load_curve_chart([], [], title="t", limit=10.0)
    assert any(t.get_text() == "no data" for t in empty.axes[0].texts)
    assert_self_contained(to_svg(empty))


ROWS = [
    ServiceHeadroom("chat-api", 44.0, Interval(5.0, 6.5, None), "watch"),
    ServiceHeadroom("embed-batch", -2.0, Interval(0.4, 0.6, 0.9), "breached"),
    ServiceHeadroom("code-assist", 53.0, None, "ok"),
    ServiceHeadroom("summarize", 49.0, Interval(3.0, 4.2, 6.5), "schedule"),
    ServiceHeadroom("rag-search", 46.0, Interval(1.0, 1.6, 2.4), "act_now"),
    ServiceHeadroom("support-bot", None, None, "stale"),
]


def test_headroom_bars_are_sorted_least_first_and_coloured_by_urgency() -> None:
    fig = headroom_chart(ROWS, title="Headroom")
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert names == ["embed-batch", "chat-api", "rag-search", "summarize", "code-assist",
                     "support-bot"]
    bars = [p for p in ax.patches if p.get_gid() == "headroom"]
    by_name = dict(zip(names, bars, strict=True))
    assert by_name["embed-batch"].get_width() == -2.0  # type: ignore[attr-defined]
    for row in ROWS:
        assert matplotlib.colors.same_color(by_name[row.service].get_facecolor(),
                                            URGENCY_COLOURS[row.decision or "ok"])
    assert {"-2%", "44%", "n/a"} <= {t.get_text() for t in ax.texts}
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # the first row on top
    assert legend_texts(fig) == ["breached", "act now", "schedule", "stale", "watch", "ok"]
    assert_self_contained(to_svg(fig))
    assert_readable(fig)


def test_runway_bars_show_median_whiskers_and_the_horizon() -> None:
    fig = headroom_chart(ROWS, title="Runway", measure="runway", horizon_weeks=8)
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert names[:4] == ["embed-batch", "rag-search", "summarize", "chat-api"]
    assert set(names[4:]) == {"support-bot", "code-assist"}
    assert names[4] == "support-bot"  # at the same runway, the more urgent decision first
    labels = [t.get_text() for t in ax.texts]
    assert labels.count("> 8 wk") == 2 and "0.6 wk" in labels and "6.5 wk" in labels
    bars = [p for p in ax.patches if p.get_gid() == "runway"]
    assert [b.get_width() for b in bars] == [0.6, 1.6, 4.2, 6.5, 8, 8]  # type: ignore[attr-defined]
    assert_self_contained(to_svg(fig))
    assert_readable(fig)


def test_an_empty_fleet_draws_an_empty_chart() -> None:
    fig = headroom_chart([], title="Headroom")
    assert any(t.get_text() == "no data" for t in fig.axes[0].texts)
    assert_self_contained(to_svg(fig))


# --- bad input is named ------------------------------------------------------------------------


@pytest.mark.parametrize(("call", "error", "words"), [
    (lambda: fan_chart([NOW], [1.0, 2.0], title="t", unit="ms"), ValueError,
     "values: 2 values for 1 times"),
    (lambda: fan_chart([NOW], ["fast"], title="t", unit="ms"), ValueError, "values: expected"),
    (lambda: fan_chart([1, 2], [1.0, 2.0], title="t", unit="ms"), TypeError, "ts: expected times"),
    (lambda: fan_chart([NOW, "soon"], [1.0, 2.0], title="t", unit="ms"),  # type: ignore[arg-type]
     TypeError,
     "ts[1]: 'soon' is not a time"),
    (lambda: fan_chart([NOW], [1.0], title="t", unit="ms", direction="over"),  # type: ignore[arg-type]
     ValueError, "direction 'over'"),
    (lambda: fan_chart([NOW], [1.0], title="t", unit="ms", limit=0.0, log_scale=True),
     ValueError, "limit 0.0: a log scale needs a value > 0"),
    (lambda: fan_chart([NOW], [1.0], title="t", unit="ms",
                       forecast=ForecastBand([NOW], [1.0], p10=[0.5])), ValueError,
     "forecast.p10 and forecast.p90 come together"),
    (lambda: fan_chart([NOW], [1.0], title="t", unit="ms",
                       forecast=ForecastBand([NOW, NOW], [1.0])), ValueError,
     "forecast.p50: 1 values for 2 times"),
    (lambda: Interval(3.0, 2.0, 4.0), ValueError, "low 3.0 is after mid 2.0"),
    (lambda: headroom_chart(ROWS, title="t", measure="days"),  # type: ignore[arg-type]
     ValueError, "measure 'days'"),
    (lambda: headroom_chart([ServiceHeadroom("a", 1.0, decision="soon")],  # type: ignore[arg-type]
                            title="t"), ValueError, "service 'a': decision 'soon'"),
])
def test_bad_input_is_named(call: Callable[[], object], error: type[Exception],
                            words: str) -> None:
    with pytest.raises(error) as caught:
        call()
    assert words in str(caught.value)


# --- how the charts are made -------------------------------------------------------------------


def test_svg_glyphs_stay_paths_when_a_notebook_changed_the_setting() -> None:
    fig = fan_chart([NOW], [1.0], title="t", unit="ms")
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        assert "<text" not in to_svg(fig)
        assert matplotlib.rcParams["svg.fonttype"] == "none"  # and the notebook keeps its own


def test_charts_draw_in_several_threads_at_once() -> None:
    def draw(i: int) -> str:
        ts, values = history(3000, seed=i)
        return to_svg(fan_chart(ts, values, title=f"series {i}", unit="ms", forecast=band(),
                                limit=1500.0, now=NOW))

    with ThreadPoolExecutor(max_workers=4) as pool:
        svgs = list(pool.map(draw, range(8)))
    for i, svg in enumerate(svgs):
        assert_self_contained(svg)
        assert f"<!-- series {i} -->" in svg


def test_each_chart_renders_to_png(tmp_path: Path) -> None:
    figures = {
        "fan": full_fan(log_scale=True),
        "demand": demand_chart(*history(1000), title="d", capacity=Interval(400.0, 420.0, 440.0)),
        "load": load_curve_chart(*load_latency(500), title="l", limit=1500.0),
        "headroom": headroom_chart(ROWS, title="h"),
    }
    for name, fig in figures.items():
        path = tmp_path / f"{name}.png"
        fig.savefig(path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_command_line_and_the_report_package_do_not_load_matplotlib() -> None:
    code = ("import sys, forecaster.cli, forecaster.report; "
            "print(sorted(m for m in ('matplotlib', 'numpy') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"


def test_tick_labels_keep_the_digits_of_their_step() -> None:
    fig = load_curve_chart(np.full(500, 100.0), np.linspace(200, 300, 500), title="t",
                           limit=1500.0)
    fig.canvas.draw()
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert "97.5" in labels and "102.5" in labels  # not "102" twice over
    assert any("," in t.get_text() for t in fig.axes[0].get_yticklabels())  # 1,000 not 1000


def test_marked_points_sit_on_the_history_and_join_the_legend() -> None:
    ts, values = history(2000)
    fig = fan_chart(ts, values, title="t", unit="ms", forecast=band(), limit=1500.0, now=NOW)
    before = legend_texts(fig)
    picked = [100, 1000]
    assert mark_points(fig, ts[picked], values[picked], label="anomaly (2)") is fig
    (marks,) = [x for x in fig.axes[0].lines if x.get_gid() == "marks"]
    assert np.allclose(np.asarray(marks.get_xdata(), dtype=float),
                       matplotlib.dates.date2num(ts[picked]))
    assert np.allclose(np.asarray(marks.get_ydata(), dtype=float), values[picked])
    assert len(fig.legends) == 1 and legend_texts(fig) == [*before, "anomaly (2)"]
    svg = to_svg(fig)
    assert_self_contained(svg)
    assert drawn_ids(svg).get("marks", 0) >= 1
    assert_readable(fig)


def test_marks_leave_out_what_cannot_be_drawn_and_name_bad_input() -> None:
    ts, values = history(300)
    fig = fan_chart(ts, values, title="t", unit="ms", log_scale=True)
    mark_points(fig, [ts[0], None, ts[2]], [0.0, 5.0, 7.0])  # <= 0 on a log axis; no time
    (marks,) = [x for x in fig.axes[0].lines if x.get_gid() == "marks"]
    assert np.asarray(marks.get_ydata(), dtype=float).tolist() == [7.0]
    plain = fan_chart(ts, values, title="t", unit="ms")
    mark_points(plain, [], [])  # nothing to mark: the chart and its legend are unchanged
    assert not [x for x in plain.axes[0].lines if x.get_gid() == "marks"]
    assert legend_texts(plain) == ["history"]
    with pytest.raises(ValueError, match="values: 1 values for 2 times"):
        mark_points(plain, ts[:2], [1.0])
    with pytest.raises(ValueError, match="the figure has no axes"):
        mark_points(Figure(), ts[:1], [1.0])
