"""Charts shared by the weekly report, the API and the notebooks.

Plain functions: arrays and datetimes in, a matplotlib :class:`~matplotlib.figure.Figure` out;
:func:`to_svg` turns a figure into an SVG that can be inlined in an HTML page that opens offline.

Figures are built with ``Figure()`` on an Agg canvas, never through pyplot: pyplot keeps a global
backend and a registry of open figures, which a server drawing in several threads must not share.
For the same reason sizes, colours and fonts are set on each artist instead of through
``rcParams``, which are global too. Times are UTC: naive datetimes are taken as UTC, aware ones are
converted. Colours are the Okabe-Ito palette, which stays distinct under the common colour-vision
deficiencies.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, Literal, TypeVar

import matplotlib
import numpy as np
import numpy.typing as npt
from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from forecaster.clock import to_utc_naive
from forecaster.types import DECISIONS, Decision

Direction = Literal["above", "below"]
FloatArray = npt.NDArray[np.float64]
# Times: datetimes (naive = UTC, None = missing) or an array of datetime64 (numpy, polars, Arrow).
Times = Sequence[datetime | None] | npt.ArrayLike
T = TypeVar("T", float, datetime)

# Okabe-Ito (Okabe & Ito 2008, "Color Universal Design").
BLACK = "#000000"
ORANGE = "#E69F00"
SKY_BLUE = "#56B4E9"
GREEN = "#009E73"
YELLOW = "#F0E442"
BLUE = "#0072B2"
VERMILLION = "#D55E00"
PURPLE = "#CC79A7"
GREY = "#7F7F7F"

URGENCY_COLOURS: dict[Decision, str] = {
    "breached": VERMILLION,
    "act_now": ORANGE,
    "schedule": YELLOW,
    "stale": GREY,
    "watch": SKY_BLUE,
    "ok": GREEN,
}

SERIES_SIZE = (8.0, 3.2)  # inches: a report column, readable on a laptop without zooming
DEFAULT_MAX_POINTS = 1200  # two points (min, max) per bucket, about one bucket per pixel column
TITLE_SIZE = 11.0
LABEL_SIZE = 10.0
TEXT_SIZE = 9.0
GAP_STEPS = 3.0  # a pause longer than this many typical steps breaks the history line
MIN_SPAN_DAYS = 1 / 24  # a shorter time axis (one point) is widened to a day
HEXBIN_MIN_POINTS = 200  # below this a plain scatter reads better than a density
_DENSITY = LinearSegmentedColormap.from_list("density", ["#D9D9D9", "#252525"])


@dataclass(frozen=True)
class Interval(Generic[T]):
    """Three quantiles of an uncertain value; ``None`` where a quantile is unknown.

    For a date (a crossing, a saturation), ``high=None`` with ``low`` set means that fewer than
    90% of the paths cross within the horizon: the span is drawn to the end of the horizon.

    Attributes:
        low: The 10th percentile (the earliest date, the lowest capacity).
        mid: The median.
        high: The 90th percentile.
    """

    low: T | None = None
    mid: T | None = None
    high: T | None = None

    def __post_init__(self) -> None:
        known = [(name, _comparable(value)) for name, value in
                 (("low", self.low), ("mid", self.mid), ("high", self.high)) if value is not None]
        for (name_a, a), (name_b, b) in zip(known, known[1:], strict=False):
            if a > b:  # type: ignore[operator]  # both floats or both UTC datetimes
                raise ValueError(f"interval: {name_a} {a} is after {name_b} {b}; quantiles must "
                                 "be in order low <= mid <= high")


@dataclass(frozen=True, eq=False)
class ForecastBand:
    """A forecast distribution over time, as quantile paths (one value per time in ``ds``).

    Attributes:
        ds: Times of the forecast steps (datetimes or ``datetime64``).
        p50: The median path.
        p10: The 10th percentile path; given with ``p90`` or not at all.
        p90: The 90th percentile path.
        p25: The 25th percentile path; given with ``p75`` or not at all.
        p75: The 75th percentile path.
    """

    ds: Times
    p50: npt.ArrayLike
    p10: npt.ArrayLike | None = None
    p90: npt.ArrayLike | None = None
    p25: npt.ArrayLike | None = None
    p75: npt.ArrayLike | None = None


@dataclass(frozen=True, eq=False)
class LoadCurve:
    """A fitted load -> latency curve on a grid of loads, with its band.

    Attributes:
        load: The loads of the grid.
        mid: The fitted latency at each load (the median).
        low: The lower edge of the band; given with ``high`` or not at all.
        high: The upper edge of the band.
    """

    load: npt.ArrayLike
    mid: npt.ArrayLike
    low: npt.ArrayLike | None = None
    high: npt.ArrayLike | None = None


@dataclass(frozen=True)
class ServiceHeadroom:
    """One service's row of the headroom chart.

    Attributes:
        service: The service name (the bar's label).
        headroom_pct: Spare capacity in % of capacity (negative when demand is above it).
        runway_weeks: Weeks until demand saturates capacity, as quantiles; ``mid=None`` when it
            does not saturate within the horizon.
        decision: The service's decision, which colours its bar by urgency.
    """

    service: str
    headroom_pct: float | None = None
    runway_weeks: Interval[float] | None = None
    decision: Decision | None = None


def fan_chart(
    ts: Times,
    values: npt.ArrayLike,
    *,
    title: str,
    unit: str,
    quantity: str = "value",
    forecast: ForecastBand | None = None,
    limit: float | None = None,
    direction: Direction = "above",
    crossing: Interval[datetime] | None = None,
    now: datetime | None = None,
    log_scale: bool = False,
    max_points: int = DEFAULT_MAX_POINTS,
) -> Figure:
    """A metric's history, its forecast fan, its limit and when the limit will be crossed.

    Args:
        ts: Times of the history (datetimes or ``datetime64``; naive means UTC), any order.
        values: The history's values; NaN leaves a gap.
        title: The chart's title.
        unit: The metric's unit (``"ms"``, ``"1/s"``; ``"1"`` for a ratio).
        quantity: What the values are, for the y axis label (``"latency p95"``).
        forecast: The forecast's quantile paths, if any.
        limit: The policy's limit, if any.
        direction: Whether the limit is breached ``above`` or ``below`` it.
        crossing: Quantiles of the first time the limit is crossed, if it is.
        now: The time the forecast starts from, drawn as a vertical line.
        log_scale: A log y axis (latencies); values <= 0 are left out.
        max_points: At most this many history points are drawn (min and max per time bucket),
            which keeps an SVG of months of 5-minute points small without hiding a spike.

    Returns:
        The figure, 8 x 3.2 inches, legend outside the plot on the right.

    Raises:
        ValueError: lengths differ, a value is not a number, a limit <= 0 on a log scale.
        TypeError: times are not times.
    """
    _check_direction(direction)
    fig, ax = _series_axes(title, log_scale)
    x = _times(ts, "ts")
    y = _values(values, "values", x.size)
    drawn = _draw_history(ax, x, y, max_points, log_scale)
    horizon_end = None
    if forecast is not None:
        horizon_end = _draw_forecast(ax, forecast, log_scale, max_points)
        drawn = drawn or horizon_end is not None
    if limit is not None:
        _draw_level(ax, limit, f"limit: breached {direction} {_with_unit(limit, unit)}",
                    VERMILLION, "--", log_scale, "limit")
    if now is not None:
        _draw_now(ax, now)
    if crossing is not None:
        _draw_time_interval(ax, crossing, "crossing", limit, horizon_end)
    _finish_time_axes(fig, ax, _axis_label(quantity, unit), log_scale, drawn)
    return fig


def demand_chart(
    ts: Times,
    values: npt.ArrayLike,
    *,
    title: str,
    unit: str = "1/s",
    quantity: str = "demand",
    forecast: ForecastBand | None = None,
    capacity: Interval[float] | None = None,
    stated_capacity: float | None = None,
    saturation: Interval[datetime] | None = None,
    now: datetime | None = None,
    max_points: int = DEFAULT_MAX_POINTS,
) -> Figure:
    """Demand history and forecast against the service's capacity, and when it saturates.

    Args:
        ts: Times of the demand history (datetimes or ``datetime64``; naive means UTC).
        values: Demand at each time; NaN leaves a gap.
        title: The chart's title.
        unit: The demand's unit (``"1/s"``).
        quantity: What the demand is, for the y axis label (``"requests"``).
        forecast: The demand forecast's quantile paths, if any.
        capacity: The effective capacity learned from the load -> latency curve (quantiles).
        stated_capacity: The capacity the owners state, if any.
        saturation: Quantiles of the first time demand reaches capacity, if it does.
        now: The time the forecast starts from.
        max_points: At most this many history points are drawn (see :func:`fan_chart`).

    Returns:
        The figure, 8 x 3.2 inches.

    Raises:
        ValueError: lengths differ or a value is not a number.
        TypeError: times are not times.
    """
    fig, ax = _series_axes(title, False)
    x = _times(ts, "ts")
    y = _values(values, "values", x.size)
    drawn = _draw_history(ax, x, y, max_points, False)
    horizon_end = None
    if forecast is not None:
        horizon_end = _draw_forecast(ax, forecast, False, max_points)
        drawn = drawn or horizon_end is not None
    if capacity is not None:
        _draw_level_band(ax, capacity, "capacity (learned)", unit, "y")
    if stated_capacity is not None:
        _draw_level(ax, stated_capacity, f"stated capacity {_with_unit(stated_capacity, unit)}",
                    BLACK, "-.", False, "stated_capacity")
    if now is not None:
        _draw_now(ax, now)
    if saturation is not None:
        mark = capacity.mid if capacity is not None and capacity.mid is not None \
            else stated_capacity
        _draw_time_interval(ax, saturation, "saturation", mark, horizon_end)
    _finish_time_axes(fig, ax, _axis_label(quantity, unit), False, drawn)
    return fig


def load_curve_chart(
    load: npt.ArrayLike,
    latency: npt.ArrayLike,
    *,
    title: str,
    load_unit: str = "1/s",
    latency_unit: str = "ms",
    load_name: str = "load",
    latency_name: str = "latency",
    curve: LoadCurve | None = None,
    limit: float | None = None,
    capacity: Interval[float] | None = None,
    stated_capacity: float | None = None,
    log_scale: bool = False,
) -> Figure:
    """A service's load against its latency: history, fitted curve, limit and capacity.

    Args:
        load: Load at each history time (requests/s, tokens/s).
        latency: Latency (or error rate) at the same times; NaN pairs are left out.
        title: The chart's title.
        load_unit: Unit of the load.
        latency_unit: Unit of the latency.
        load_name: What the load is, for the x axis label.
        latency_name: What the latency is, for the y axis label.
        curve: The fitted monotone curve and its band, if any.
        limit: The latency limit, if any.
        capacity: The effective capacity (the load at which the curve crosses the limit), as
            quantiles; ``high=None`` means beyond the loads seen.
        stated_capacity: The capacity the owners state, if any.
        log_scale: A log y axis.

    Returns:
        The figure, 8 x 3.2 inches. Many points are drawn as a density (hexagonal bins, darker
        where more points fall), so that the SVG stays small.

    Raises:
        ValueError: lengths differ, a value is not a number, a limit <= 0 on a log scale.
    """
    fig = _figure(SERIES_SIZE)
    ax = fig.add_subplot()
    _style_axes(ax, title)
    if log_scale:
        ax.set_yscale("log")
    x = _values(load, "load")
    y = _values(latency, "latency", x.size)
    ok = np.isfinite(x) & np.isfinite(y) & ((y > 0) if log_scale else True)
    drawn = bool(ok.any())
    first: list[Patch] = []
    if ok.sum() >= HEXBIN_MIN_POINTS:
        ax.hexbin(x[ok], y[ok], gridsize=48, mincnt=1, bins="log", cmap=_DENSITY, linewidths=0,
                  yscale="log" if log_scale else "linear", gid="history",
                  zorder=1.5)  # over the curve's band, under its line: the data stays visible
        # A density has no legend entry of its own: a grey patch stands for it.
        first.append(Patch(facecolor="#8C8C8C", label="history (darker: more points)"))
    elif drawn:
        ax.scatter(x[ok], y[ok], s=10, color=BLACK, alpha=0.5, linewidths=0, label="history",
                   gid="history")
    if curve is not None:
        drawn = _draw_curve(ax, curve, log_scale) or drawn
    if limit is not None:
        _draw_level(ax, limit, f"limit {_with_unit(limit, latency_unit)}", VERMILLION, "--",
                    log_scale, "limit")
    if capacity is not None:
        _draw_level_band(ax, capacity, "effective capacity", load_unit, "x")
    if stated_capacity is not None:
        ax.axvline(stated_capacity, color=BLACK, lw=1.2, ls="-.", gid="stated_capacity",
                   label=f"stated capacity {_with_unit(stated_capacity, load_unit)}")
    if drawn:
        _keep_data_in_view(ax, y[ok], limit, log_scale)
    _value_axis(ax, log_scale)
    ax.xaxis.set_major_formatter(FuncFormatter(_tick_number))
    ax.set_xlabel(_axis_label(load_name, load_unit), fontsize=LABEL_SIZE)
    ax.set_ylabel(_axis_label(latency_name, latency_unit), fontsize=LABEL_SIZE)
    _finish(fig, ax, drawn, first=first)
    return fig


def headroom_chart(
    rows: Sequence[ServiceHeadroom],
    *,
    title: str,
    measure: Literal["headroom", "runway"] = "headroom",
    horizon_weeks: float | None = None,
) -> Figure:
    """Services side by side: headroom in % of capacity, or runway in weeks, most urgent on top.

    Args:
        rows: One row per service.
        title: The chart's title.
        measure: ``"headroom"`` draws ``headroom_pct``; ``"runway"`` draws ``runway_weeks``
            (bar to the median, whiskers from p10 to p90).
        horizon_weeks: The forecast horizon: a runway beyond it is drawn to it, hatched, and
            labelled "> horizon".

    Returns:
        The figure, 8 inches wide, a third of an inch per service. Bars are coloured by the
        service's decision.

    Raises:
        ValueError: an unknown measure or decision.
    """
    if measure not in ("headroom", "runway"):
        raise ValueError(f"measure {measure!r}: expected 'headroom' or 'runway'")
    for row in rows:
        if row.decision is not None and row.decision not in URGENCY_COLOURS:
            raise ValueError(f"service {row.service!r}: decision {row.decision!r} is not one of "
                             f"{', '.join(DECISIONS)}")
    fig = _figure((SERIES_SIZE[0], max(2.2, 1.1 + 0.34 * len(rows))))
    ax = fig.add_subplot()
    _style_axes(ax, title)
    ax.grid(True, axis="x", color="#E5E5E5", lw=0.6)
    ax.grid(False, axis="y")
    if measure == "headroom":
        _headroom_bars(ax, rows)
    else:
        _runway_bars(ax, rows, horizon_weeks)
    key = [Patch(facecolor=URGENCY_COLOURS[d], edgecolor="#333333", lw=0.5,
                 label=d.replace("_", " "))
           for d in DECISIONS if any(row.decision == d for row in rows)]
    _finish(fig, ax, bool(rows), last=key, title="decision" if key else None)
    return fig


def mark_points(fig: Figure, ts: Times, values: npt.ArrayLike, *,
                label: str = "anomaly") -> Figure:
    """Circles points of a time chart (anomalies on a :func:`fan_chart` or :func:`demand_chart`)
    and adds them to its legend.

    Args:
        fig: A figure made by :func:`fan_chart` or :func:`demand_chart`; its axes are marked.
        ts: Times of the points (datetimes or ``datetime64``; naive means UTC).
        values: The value at each time (the circles sit on the history line).
        label: The legend entry.

    Returns:
        The same figure, so that a notebook cell can end with it. Points with a missing time or
        value (or a value <= 0 on a log scale) are left out.

    Raises:
        ValueError: the figure has no axes, lengths differ or a value is not a number.
        TypeError: times are not times.
    """
    if not fig.axes:
        raise ValueError("mark_points: the figure has no axes; expected one made by fan_chart "
                         "or demand_chart")
    ax = fig.axes[0]
    x = _times(ts, "ts")
    y = _values(values, "values", x.size)
    ok = np.isfinite(x) & np.isfinite(y) & ((y > 0) if ax.get_yscale() == "log" else True)
    if ok.any():
        ax.plot(x[ok], y[ok], ls="none", marker="o", ms=9, mfc="none", mec=VERMILLION, mew=1.6,
                label=label, gid="marks", zorder=3)
        for legend in list(fig.legends):  # rebuilt below with the new entry last
            legend.remove()
        _finish(fig, ax, True)
    return fig


def to_svg(fig: Figure) -> str:
    """The figure as a self-contained SVG element, ready to inline in HTML.

    Glyphs are written as paths (no font needed to read it), images inline, no metadata (date,
    creator) and no XML prolog or DOCTYPE. Clip-path ids are salted at random by matplotlib, so
    that several charts inlined in one page do not collide.
    """
    buffer = io.BytesIO()
    with _svg_settings():
        fig.savefig(buffer, format="svg",
                    metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = _PROLOG.sub("", buffer.getvalue().decode("utf-8"), count=1)
    # Path data in points with six decimals is most of the bytes; a hundredth of a point is
    # far below a pixel, so two decimals and no line breaks inside a path halve a page of charts.
    return _PATH_DATA.sub(_compact_path, text)


_PROLOG = re.compile(r"\A\s*<\?xml[^>]*\?>\s*(?:<!DOCTYPE[^>]*>\s*)?")
_PATH_DATA = re.compile(r' d="([^"]*)"')
_LONG_DECIMAL = re.compile(r"(-?\d+\.\d\d)\d+")


def _compact_path(match: re.Match[str]) -> str:
    data = _LONG_DECIMAL.sub(r"\1", match[1])
    return ' d="' + " ".join(data.split()) + '"'


@contextlib.contextmanager
def _svg_settings() -> Iterator[None]:
    """Glyphs as paths and images inline, which are matplotlib's defaults.

    ``rc_context`` changes global state, so it is entered only when someone (a notebook) has
    changed those defaults.
    """
    if matplotlib.rcParams["svg.fonttype"] == "path" and matplotlib.rcParams["svg.image_inline"]:
        yield
        return
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.image_inline": True}):
        yield


# --- building blocks ----------------------------------------------------------------------------


def _figure(size: tuple[float, float]) -> Figure:
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # an explicit, non-interactive canvas: no backend is chosen globally
    return fig


def _style_axes(ax: Axes, title: str) -> None:
    ax.set_title(title, fontsize=TITLE_SIZE, loc="left")
    ax.tick_params(labelsize=TEXT_SIZE)
    ax.grid(True, color="#E5E5E5", lw=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _series_axes(title: str, log_scale: bool) -> tuple[Figure, Axes]:
    fig = _figure(SERIES_SIZE)
    ax = fig.add_subplot()
    _style_axes(ax, title)
    if log_scale:
        ax.set_yscale("log")  # before drawing, so that autoscaling sees positive limits
    return fig, ax


def _finish(fig: Figure, ax: Axes, drawn: bool, first: Sequence[Patch] = (),
            last: Sequence[Patch] = (), title: str | None = None) -> None:
    """Says "no data" on an empty chart; puts the legend outside the plot, where it hides nothing.

    Args:
        fig: The figure.
        ax: Its axes.
        drawn: Whether any data was drawn.
        first: Legend entries for artists without their own, put before the others.
        last: Legend entries put after the others (a colour key).
        title: The legend's title.
    """
    if not drawn:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center",
                fontsize=LABEL_SIZE, color=GREY)
        ax.set_xticks([])
        ax.set_yticks([])
    handles, labels = ax.get_legend_handles_labels()
    handles = [*first, *handles, *last]
    labels = [*(p.get_label() for p in first), *labels, *(p.get_label() for p in last)]
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize=TEXT_SIZE,
                   frameon=False, handlelength=1.8, title=title, title_fontsize=TEXT_SIZE,
                   alignment="left")


def _finish_time_axes(fig: Figure, ax: Axes, ylabel: str, log_scale: bool, drawn: bool) -> None:
    if drawn:  # (the concise formatter fails on an axis without ticks)
        low, high = ax.dataLim.intervalx
        if np.isfinite(low) and high - low < MIN_SPAN_DAYS:  # one time: a day, not years
            middle = (low + high) / 2
            ax.set_xlim(middle - 0.5, middle + 0.5)
        locator = mdates.AutoDateLocator(tz=UTC, minticks=4, maxticks=10)  # fits an hour to years
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    ax.xaxis.get_offset_text().set_fontsize(TEXT_SIZE)
    ax.set_xlabel("time (UTC)", fontsize=LABEL_SIZE)
    ax.set_ylabel(ylabel, fontsize=LABEL_SIZE)
    _value_axis(ax, log_scale)
    _finish(fig, ax, drawn)


def _value_axis(ax: Axes, log_scale: bool) -> None:
    if log_scale:
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(FuncFormatter(_tick_number))


def _draw_history(ax: Axes, x: FloatArray, y: FloatArray, max_points: int,
                  log_scale: bool) -> bool:
    if log_scale:
        y = np.where(y > 0, y, np.nan)
    xs, ys, isolated = envelope(x, y, max_points)
    if not np.isfinite(ys).any():
        return False
    marks = isolated if isolated.any() else None
    ax.plot(xs, ys, color=BLACK, lw=0.7, alpha=0.85, label="history", gid="history",
            marker="o" if marks is not None else None, ms=3, markevery=marks)
    return True


def _draw_forecast(ax: Axes, band: ForecastBand, log_scale: bool,
                   max_points: int) -> float | None:
    """Draws the fan; returns the end of the horizon (a date number), or None if empty."""
    x = _times(band.ds, "forecast.ds")
    paths = {name: _values(getattr(band, name), f"forecast.{name}", x.size)
             for name in ("p50", "p10", "p90", "p25", "p75") if getattr(band, name) is not None}
    for low, high in (("p10", "p90"), ("p25", "p75")):
        if (low in paths) != (high in paths):
            raise ValueError(f"forecast.{low} and forecast.{high} come together: one is missing")
    keep = np.isfinite(x)
    order = np.argsort(x[keep], kind="stable")
    x = x[keep][order]
    if x.size == 0:
        return None
    if x.size > max_points:  # forecasts are smooth: evenly spaced steps lose nothing visible
        pick = np.unique(np.linspace(0, x.size - 1, max_points).round().astype(np.int64))
        x = x[pick]
    else:
        pick = np.arange(x.size)
    for name, path in paths.items():
        path = path[keep][order][pick]
        paths[name] = np.where(path > 0, path, np.nan) if log_scale else path
    if "p10" in paths:
        ax.fill_between(x, paths["p10"], paths["p90"], color=SKY_BLUE, alpha=0.3, lw=0,
                        label="forecast p10–p90", gid="forecast_p10_p90")
    if "p25" in paths:
        ax.fill_between(x, paths["p25"], paths["p75"], color=SKY_BLUE, alpha=0.55, lw=0,
                        label="forecast p25–p75", gid="forecast_p25_p75")
    ax.plot(x, paths["p50"], color=BLUE, lw=1.6, label="forecast p50", gid="forecast_p50")
    return float(x[-1])


def _draw_curve(ax: Axes, curve: LoadCurve, log_scale: bool) -> bool:
    x = _values(curve.load, "curve.load")
    mid = _values(curve.mid, "curve.mid", x.size)
    if (curve.low is None) != (curve.high is None):
        raise ValueError("curve.low and curve.high come together: one is missing")
    order = np.argsort(x, kind="stable")
    x, mid = x[order], mid[order]
    if log_scale:
        mid = np.where(mid > 0, mid, np.nan)
    if curve.low is not None and curve.high is not None:
        low = _values(curve.low, "curve.low", x.size)[order]
        high = _values(curve.high, "curve.high", x.size)[order]
        if log_scale:
            low, high = np.where(low > 0, low, np.nan), np.where(high > 0, high, np.nan)
        ax.fill_between(x, low, high, color=SKY_BLUE, alpha=0.35, lw=0,
                        label="fitted curve p10–p90", gid="curve_band")
    ax.plot(x, mid, color=BLUE, lw=1.8, label="fitted curve p50", gid="curve")
    return bool(np.isfinite(mid).any())


def _keep_data_in_view(ax: Axes, y: FloatArray, limit: float | None, log_scale: bool) -> None:
    """Cuts the y axis where an extrapolated curve would squash the history into a strip.

    The axis keeps the history and the limit with a margin; the curve runs off the top beyond.
    """
    if y.size == 0:
        return
    top = max(float(np.max(y)), limit if limit is not None else -np.inf)
    low, high = ax.get_ylim()
    if not log_scale:
        # The autoscaled bottom has a margin of the whole range, the runaway curve included,
        # which can sink it far below zero: the bottom's margin is the data's and the limit's.
        bottom = min(float(np.min(y)), limit if limit is not None else np.inf)
        low = max(low, bottom - 0.05 * ((top - bottom) or abs(top) or 1.0))
    wanted = top * 1.5 if log_scale else top + 0.3 * (top - low)
    if high > wanted and wanted > low:
        ax.set_ylim(low, wanted)


def _draw_level(ax: Axes, value: float, label: str, colour: str, style: str, log_scale: bool,
                gid: str) -> None:
    if log_scale and not value > 0:
        raise ValueError(f"{gid} {value}: a log scale needs a value > 0")
    ax.axhline(value, color=colour, lw=1.4, ls=style, label=label, gid=gid)


def _draw_level_band(ax: Axes, level: Interval[float], what: str, unit: str,
                     axis: Literal["x", "y"]) -> None:
    """A learned capacity: p10-p90 as a span, the median as a line, along ``axis``."""
    span = ax.axvspan if axis == "x" else ax.axhspan
    line = ax.axvline if axis == "x" else ax.axhline
    gid = what.split(" ")[0] if axis == "y" else "effective_capacity"
    if level.low is not None:
        high = level.high
        end = ax.get_xlim()[1] if axis == "x" else ax.get_ylim()[1]
        text = _with_unit(high, unit) if high is not None else "beyond the data"
        span(level.low, high if high is not None else max(end, level.low), color=GREEN,
             alpha=0.18, lw=0, label=f"{what} p10–p90:\n{_number(level.low)} – {text}",
             gid=f"{gid}_band")
    if level.mid is not None:
        line(level.mid, color=GREEN, lw=1.6, label=f"{what} p50: {_with_unit(level.mid, unit)}",
             gid=gid)


def _draw_now(ax: Axes, now: datetime) -> None:
    ax.axvline(_when(now), color=GREY, lw=1.1, ls=":", label=f"now: {_clock(now)}", gid="now")


def _draw_time_interval(ax: Axes, when: Interval[datetime], what: str, level: float | None,
                        horizon_end: float | None) -> None:
    if when.low is not None:
        start = _when(when.low)
        if when.high is not None:
            end, text = _when(when.high), _day(when.high)
        else:
            end, text = max(horizon_end or ax.get_xlim()[1], start), "after the horizon"
        ax.axvspan(start, end, color=PURPLE, alpha=0.22, lw=0, gid=f"{what}_span",
                   label=f"{what} p10–p90 (UTC):\n{_day(when.low)} – {text}")
    if when.mid is not None:
        mid = _when(when.mid)
        ax.axvline(mid, color=PURPLE, lw=1.5, label=f"{what} p50: {_clock(when.mid)}",
                   gid=f"{what}_p50")
        if level is not None:
            ax.plot([mid], [level], ls="none", marker="D", ms=6, color=PURPLE,
                    markeredgecolor=BLACK, markeredgewidth=0.6, gid=f"{what}_mark")


def _headroom_bars(ax: Axes, rows: Sequence[ServiceHeadroom]) -> None:
    ordered = sorted(rows, key=lambda r: (r.headroom_pct is None, r.headroom_pct or 0.0,
                                          _rank(r), r.service))
    pos = np.arange(len(ordered))
    values = [r.headroom_pct if r.headroom_pct is not None else 0.0 for r in ordered]
    ax.barh(pos, values, color=[_urgency(r) for r in ordered], edgecolor="#333333", lw=0.5,
            height=0.65, gid="headroom")
    ax.axvline(0, color=BLACK, lw=0.8)
    for y, row, value in zip(pos, ordered, values, strict=True):
        text = "n/a" if row.headroom_pct is None else f"{value:.0f}%"
        ax.annotate(text, (value, y), xytext=(4 if value >= 0 else -4, 0),
                    textcoords="offset points", ha="left" if value >= 0 else "right",
                    va="center", fontsize=TEXT_SIZE)
    _service_ticks(ax, pos, ordered)
    ax.set_xlabel("headroom (% of capacity)", fontsize=LABEL_SIZE)
    low, high = ax.get_xlim()  # room for the labels at the bar ends
    ax.set_xlim(min(low, 0.0) - 0.08 * (high - low) * (low < 0), high + 0.1 * (high - low))


def _runway_bars(ax: Axes, rows: Sequence[ServiceHeadroom], horizon_weeks: float | None) -> None:
    def key(row: ServiceHeadroom) -> tuple[float, int, str]:
        mid = row.runway_weeks.mid if row.runway_weeks is not None else None
        return (mid if mid is not None else float("inf"), _rank(row), row.service)

    ordered = sorted(rows, key=key)
    pos = np.arange(len(ordered))
    cap = horizon_weeks if horizon_weeks is not None else 0.0
    for y, row in zip(pos, ordered, strict=True):
        runway = row.runway_weeks or Interval[float]()
        beyond = runway.mid is None
        value = cap if beyond else float(runway.mid or 0.0)
        ax.barh([y], [value], color=_urgency(row), edgecolor="#333333", lw=0.5, height=0.65,
                hatch="//" if beyond else None, alpha=0.6 if beyond else 1.0, gid="runway")
        right = value
        if not beyond and runway.low is not None:
            ax.errorbar([value], [y], xerr=[[value - runway.low], [0.0]], fmt="none",
                        ecolor=BLACK, elinewidth=1.0, capsize=3)
            if runway.high is not None:
                right = float(runway.high)
                ax.errorbar([value], [y], xerr=[[0.0], [right - value]], fmt="none",
                            ecolor=BLACK, elinewidth=1.0, capsize=3)
            else:  # p90 beyond the horizon: an open whisker
                right = max(cap, value) + 0.04 * max(cap, value, 1.0)
                ax.annotate("", xy=(right, y), xytext=(value, y),
                            arrowprops={"arrowstyle": "->", "color": BLACK, "lw": 1.0})
        text = (f"> {_number(cap)} wk" if horizon_weeks is not None else "not in horizon") \
            if beyond else f"{_number(value)} wk"
        ax.annotate(text, (right, y), xytext=(5, 0), textcoords="offset points", ha="left",
                    va="center", fontsize=TEXT_SIZE)
    _service_ticks(ax, pos, ordered)
    ax.set_xlabel("runway until demand reaches capacity (weeks; whiskers p10–p90)",
                  fontsize=LABEL_SIZE)
    low, high = ax.get_xlim()
    ax.set_xlim(0.0, high + 0.15 * (high - low))


def _service_ticks(ax: Axes, pos: npt.NDArray[np.int64], rows: Sequence[ServiceHeadroom]) -> None:
    ax.set_yticks(pos, [r.service for r in rows], fontsize=TEXT_SIZE)
    if rows:
        ax.set_ylim(len(rows) - 0.5, -0.5)  # the most urgent on top


def _rank(row: ServiceHeadroom) -> int:
    return DECISIONS.index(row.decision) if row.decision is not None else len(DECISIONS)


def _urgency(row: ServiceHeadroom) -> str:
    return URGENCY_COLOURS[row.decision] if row.decision is not None else "#BBBBBB"


# --- arrays -------------------------------------------------------------------------------------


def envelope(x: FloatArray, y: FloatArray,
             max_points: int) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """A line of at most about ``max_points`` points that draws like the full one.

    Time is cut into ``max_points // 2`` equal buckets; each keeps its lowest and its highest
    point in time order, so that spikes survive (a mean or a stride would hide them). A missing
    value or a pause longer than ``GAP_STEPS`` typical steps breaks the line (a NaN is inserted)
    rather than being bridged by a straight segment.

    Args:
        x: Times as date numbers (any order; NaN for a missing time).
        y: Values (NaN for a missing value).
        max_points: The budget; values below 4 are taken as 4.

    Returns:
        ``(x, y, isolated)``: the points in time order with NaN rows at the breaks, and a mask
        of the points alone in their segment (to be drawn as markers: a line of one point is
        invisible).
    """
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    ok = np.isfinite(x) & np.isfinite(y)
    missing_so_far = np.cumsum(~ok)[ok]
    xf, yf = x[ok], y[ok]
    if xf.size == 0:
        empty = np.empty(0)
        return empty, empty, np.zeros(0, dtype=bool)
    step = np.diff(xf)
    positive = step[step > 0]
    typical = float(np.median(positive)) if positive.size else 0.0
    breaks = np.zeros(xf.size, dtype=bool)
    breaks[1:] = np.diff(missing_so_far) > 0
    if typical > 0:
        breaks[1:] |= step > GAP_STEPS * typical
    segment = np.cumsum(breaks)
    buckets = max(2, max_points // 2)
    if xf.size > 2 * buckets:
        span = xf[-1] - xf[0]
        bucket = np.minimum(((xf - xf[0]) / span * buckets).astype(np.int64), buckets - 1)
        key = segment * buckets + bucket
        by_key = np.lexsort((yf, key))
        k = key[by_key]
        first = np.r_[True, k[1:] != k[:-1]]
        last = np.r_[k[1:] != k[:-1], True]
        keep = np.unique(np.r_[by_key[first], by_key[last]])
        xf, yf, segment = xf[keep], yf[keep], segment[keep]
    counts = np.bincount(segment)
    isolated = counts[segment] == 1
    cuts = np.nonzero(np.diff(segment))[0] + 1
    xs = np.insert(xf, cuts, xf[cuts - 1]) if cuts.size else xf
    ys = np.insert(yf, cuts, np.nan) if cuts.size else yf
    marks = np.insert(isolated, cuts, False) if cuts.size else isolated
    return xs, ys, marks


def _times(values: Times, what: str) -> FloatArray:
    """Times as matplotlib date numbers (days), UTC; NaN for a missing time."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a one-dimensional sequence of times, got shape "
                         f"{arr.shape}")
    if arr.size == 0:
        return np.empty(0)
    if arr.dtype.kind == "M":
        stamps = arr.astype("datetime64[us]")
    elif arr.dtype == object:
        converted: list[np.datetime64] = []
        for i, value in enumerate(arr):
            if value is None:
                converted.append(np.datetime64("NaT", "us"))
            elif isinstance(value, datetime):
                converted.append(np.datetime64(to_utc_naive(value), "us"))
            elif isinstance(value, np.datetime64):
                converted.append(value.astype("datetime64[us]"))
            else:
                raise TypeError(f"{what}[{i}]: {value!r} is not a time; expected a datetime or "
                                "numpy datetime64")
        stamps = np.array(converted, dtype="datetime64[us]")
    else:
        raise TypeError(f"{what}: expected times (datetime or datetime64), got an array of "
                        f"{arr.dtype}")
    return np.asarray(mdates.date2num(stamps), dtype=np.float64)


def _values(values: npt.ArrayLike, what: str, size: int | None = None) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what}: expected numbers ({err})") from None
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a one-dimensional sequence, got shape {arr.shape}")
    if size is not None and arr.size != size:
        raise ValueError(f"{what}: {arr.size} values for {size} times; one value per time is "
                         "needed")
    return arr


def _when(value: datetime) -> float:
    return float(mdates.date2num(np.datetime64(to_utc_naive(value), "us")))


def _comparable(value: float | datetime) -> float | datetime:
    return to_utc_naive(value) if isinstance(value, datetime) else float(value)


def _check_direction(direction: str) -> None:
    if direction not in ("above", "below"):
        raise ValueError(f"direction {direction!r}: expected 'above' or 'below'")


# --- text ---------------------------------------------------------------------------------------


def _day(value: datetime) -> str:
    """``30 Nov 14:40``: the day and time people plan with (in UTC)."""
    return to_utc_naive(value).strftime("%d %b %H:%M")


def _clock(value: datetime) -> str:
    return f"{_day(value)} UTC"


def _number(value: float) -> str:
    """A number as a person reads it: ``1,500``, ``12.5``, ``0.05``."""
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 1:
        return f"{value:.3g}"
    return f"{value:.2g}" if magnitude > 0 else "0"


def _tick_number(value: float, _pos: object = None) -> str:
    """A tick label: as many digits as the tick has (``97.5``, ``1,500``, ``0.045``)."""
    return f"{value:,.0f}" if abs(value) >= 1e6 else f"{value:,.6g}"


def _with_unit(value: float, unit: str) -> str:
    shown = _VALUE_UNITS.get(unit, f" {unit}")
    return f"{_number(value)}{shown}"


def _axis_label(quantity: str, unit: str) -> str:
    shown = _AXIS_UNITS.get(unit, unit)
    return f"{quantity} ({shown})" if shown else quantity


# Units as the store writes them, as a reader wants them: a ratio has none, "1/s" is per second.
_VALUE_UNITS = {"": "", "1": "", "1/s": "/s"}
_AXIS_UNITS = {"": "", "1": "", "1/s": "per second"}
