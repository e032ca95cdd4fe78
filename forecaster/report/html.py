"""The report as one self-contained HTML page: styles inline, charts as inline SVG, no script, no
outside font or link, so it opens anywhere (a mail attachment, a wiki, an air-gapped laptop)."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from forecaster.report import charts, pictures, planning
from forecaster.report.build import Inputs, Report
from forecaster.report.planning import ServicePlan
from forecaster.wording import action_phrase, clock_time, metric_name, spoken_duration

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1a1a1a;
       margin: 0 auto; max-width: 1180px; padding: 24px 32px 64px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 36px 0 8px;
  border-bottom: 2px solid #ddd; padding-bottom: 4px; } h3 { font-size: 16px; margin: 24px 0 6px; }
.sub { color: #555; margin: 0 0 16px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 12px; font-size: 13px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #e3e3e3;
  vertical-align: top; }
th { background: #f4f4f4; font-weight: 600; } td.num, th.num { text-align: right;
  font-variant-numeric: tabular-nums; } td.num { white-space: nowrap; }
.badge { display: inline-block; padding: 1px 7px; border-radius: 9px; font-size: 12px;
  font-weight: 600; color: #fff; white-space: nowrap; }
.breached, .act_now { background: #B8472E; } .schedule { background: #C07A00; }
.watch { background: #3C7DAA; } .stale { background: #777; } .ok { background: #2E8B6A; }
.none { color: #777; } .why { color: #333; max-width: 420px; } .t { white-space: nowrap; }
.wide { overflow-x: auto; }
figure { margin: 10px 0 18px; } figure svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 12px; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin: 12px 0; }
.card { border: 1px solid #ddd; border-radius: 8px; padding: 10px 14px; min-width: 170px; }
.card b { display: block; font-size: 22px; }
.note { background: #f7f7f2; border-left: 4px solid #C07A00; padding: 8px 12px; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _when(ts: datetime | None) -> str:
    """A time in tables whose header says UTC: ``Wed 25 Nov 14:00``, one line."""
    return "-" if ts is None else f'<span class="t">{ts:%a %d %b %H:%M}</span>'



def _act_by(ts: datetime | None, as_of: datetime) -> str:
    """An act-by date; one already past at the run's as-of time is due now."""
    if ts is not None and ts <= as_of:
        return f'<b>now</b> <small>(was {_when(ts)})</small>'
    return _when(ts)


def _day(ts: datetime | None) -> str:
    return "-" if ts is None else f"{ts:%a %d %b}"


def _range(low: datetime | None, high: datetime | None) -> str:
    if low is None:
        return "-"
    return f"{_when(low)} to {_when(high) if high is not None else 'beyond horizon'}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:+.0f}%".replace("+", "")


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}" if abs(value) >= 1 else (
        f"{value:.3g}")
    return f"{text}/s" if unit == "1/s" else f"{text} {unit}" if unit not in ("", "1") else text


def _weeks(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _badge(decision: str) -> str:
    return f'<span class="badge {_e(decision)}">{_e(decision.replace("_", " "))}</span>'


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    cells = "".join(f'<th class="num">{_e(h)}</th>' if k in numeric else f"<th>{_e(h)}</th>"
                    for k, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if k in numeric else f"<td>{c}</td>"
                                    for k, c in enumerate(row)) + "</tr>" for row in rows)
    return (f'<div class="wide"><table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody>'
            "</table></div>")


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{_e(caption)}</figcaption></figure>"


def _risks(report: Report, stale: int) -> str:
    silent = (f"<p><b>{stale} series have no recent data (stale)</b>: they get no answer until "
              "their data comes back; see section 3.</p>") if stale else ""
    if not report.risks:
        return silent or "<p>No series is expected to cross its limit within its horizon.</p>"
    rows = []
    for k, r in enumerate(report.risks, 1):
        rows.append([
            str(k), _e(r.unique_id), _badge(r.decision), _e(action_phrase(r.action)),
            _e(spoken_duration(timedelta(seconds=r.lead_time_s))), _act_by(r.act_by, report.as_of),
            _when(r.eta_p50), _range(r.eta_p10, r.eta_p90),
            "-" if r.p_breach is None else f"{r.p_breach:.2f}",
            f'<span class="why">{_e(r.reason)}</span>'])
    return silent + _table(["#", "series", "decision", "action", "lead time", "act by (UTC)",
                            "crossing p50 (UTC)", "80% range (UTC)", "p", "why"], rows,
                           numeric=(0, 8))


def _headroom_rows(report: Report) -> str:
    plans = report.plans
    rows = []
    for p in plans:
        room, cap = p.headroom, p.capacity
        if p.problem is not None or room is None or cap is None:
            first = next((one.problem for one in p.limited if one.problem), None)
            reason = p.problem or first or (
                "no latency or error-rate metric with an `above` policy" if not p.limited
                else "no limit gives a capacity within reach of the loads seen")
            rows.append([_e(p.service)] + ["-"] * 8
                        + [f'<span class="none">{_e(reason)}</span>'])
            continue
        low, mid, high = room.runway_weeks
        binding = next(one for one in p.limited if one.metric == p.binding)
        rows.append([
            _e(p.service), _num(room.current_load, p.load_unit),
            _num(room.peak_load, p.load_unit), _num(p.stated_capacity, p.load_unit),
            f"{_num(cap.p50, p.load_unit)}<br><small>{_num(cap.p10)} to "
            f"{_num(cap.p90) if cap.p90 is not None else 'beyond'}</small>",
            _pct(room.headroom_peak[1]), f"{100.0 * room.growth_per_week:+.1f}%",
            f"{_weeks(mid)}<br><small>{_weeks(low)} to "
            f"{_weeks(high) if high is not None else 'beyond'}</small>",
            _act_by(p.saturation.act_by, report.as_of) if p.saturation else "-",
            _e(f"{metric_name(binding.metric)} {_num(cap.limit, binding.unit)}")
            + ("<br><small>above the loads seen</small>" if cap.extrapolated else "")])
    return _table(["service", "demand now", "30-day peak", "stated capacity",
                   "learned capacity (80%)", "headroom at peak", "growth per week",
                   "runway, weeks (80%)", "act by (UTC)", "binding limit"], rows,
                  numeric=(1, 2, 3, 4, 5, 6, 7))


def _service_section(plan: ServicePlan, inputs: Inputs, report: Report,
                     svg: Callable[[Any], str]) -> str:
    out = [f'<h3 id="svc-{_e(plan.service)}">{_e(plan.service)}</h3>']
    now = report.as_of
    if plan.load_metric is not None:
        uid = f"{plan.service}:{plan.load_metric}"
        demand = planning.samples(inputs.history, uid)
        out.append(_figure(svg(pictures.demand_figure(plan, demand, now)),
                           "Demand, its forecast (sample paths: p10-p90, p25-p75, p50), the "
                           "learned capacity (80% band) and the stated one."))
    binding = next((one for one in plan.limited if one.metric == plan.binding), None)
    if binding is not None and binding.curve is not None:
        out.append(_figure(svg(pictures.curve_figure(plan.service, plan.load_metric or "",
                                                     plan.load_unit, binding)),
                           f"How {metric_name(binding.metric)} responds to load over the last "
                           "two weeks, and the load at which it reaches its limit."))
    answers = inputs.interventions.filter(pl.col("service") == plan.service)
    units = dict(zip(inputs.series["unique_id"].to_list(),
                     inputs.series["unit"].fill_null("").to_list(), strict=True))
    # A chart for each series that needs something (an action, a look, its feed back); the ones
    # that are ok are named in one line, so a fleet of hundreds stays a page a person reads (and
    # the API draws any series: GET /v1/series/{uid}/chart.svg).
    quiet = answers.filter(pl.col("decision") == "ok").sort("metric")
    if quiet.height:
        names = ", ".join(metric_name(m) for m in quiet["metric"].to_list())
        out.append(f'<p class="none">Within their limits over the horizon (ok): {_e(names)}.</p>')
    for answer in answers.filter(pl.col("decision") != "ok").sort("metric").iter_rows(named=True):
        uid = answer["unique_id"]
        forecast = inputs.forecasts.filter(pl.col("unique_id") == uid)
        history = planning.samples(inputs.history, uid)
        out.append(_figure(svg(pictures.series_figure(uid, units.get(uid, ""), history,
                                                      forecast, answer, now)),
                           f"{uid}: {answer['decision'].replace('_', ' ')}. {answer['reason']}"))
    return "".join(out)


def _changes(report: Report) -> str:
    c = report.changes
    if c.previous_run_id is None:
        return ("<p>No run a week older than this one is stored, so there is nothing to compare "
                "with yet; next week's report will show what changed.</p>")
    parts = [f"<p>Compared with run {c.previous_run_id}: {len(c.new)} new, {len(c.resolved)} "
             f"resolved, {len(c.unanswered)} no longer answered, {len(c.escalated)} more urgent, "
             f"{len(c.moved)} moved, {c.unchanged} unchanged.</p>"]
    if c.new:
        parts.append("<h3>New</h3>" + _table(
            ["series", "decision", "act by (UTC)", "crossing p50 (UTC)"],
            [[_e(r.unique_id), _badge(r.decision), _act_by(r.act_by, report.as_of),
              _when(r.eta_p50)] for r in c.new]))
    if c.resolved:
        parts.append("<h3>Resolved</h3>" + _table(
            ["series", "was", "now", "crossing p50 was (UTC)"],
            [[_e(r["unique_id"]), _badge(r["was"]), _e(r["now"].replace("_", " ")),
              _when(r["was_eta_p50"])] for r in c.resolved]))
    if c.unanswered:
        parts.append("<h3>No longer answered (not resolved: their data stopped)</h3>" + _table(
            ["series", "was", "now", "crossing p50 was (UTC)"],
            [[_e(r["unique_id"]), _badge(r["was"]), _e(r["now"].replace("_", " ")),
              _when(r["was_eta_p50"])] for r in c.unanswered]))
    if c.escalated:
        parts.append("<h3>More urgent</h3>" + _table(
            ["series", "was", "now"],
            [[_e(r["unique_id"]), _badge(r["was"]), _badge(r["now"])] for r in c.escalated]))
    if c.moved:
        parts.append("<h3>Dates that moved</h3>" + _table(
            ["series", "crossing p50 was (UTC)", "now (UTC)", "moved"],
            [[_e(m.unique_id), _when(m.was), _when(m.now),
              ("earlier by " if m.shift_s < 0 else "later by ")
              + _e(spoken_duration(timedelta(seconds=abs(m.shift_s))))] for m in c.moved]))
    return "".join(parts)


def _scoring(report: Report) -> str:
    overall = report.scoring["overall"]
    n = overall.get("scored") or 0
    if not n:
        return ("<p>No published estimate has reached the end of its horizon yet, so none could "
                "be scored; the first scores appear once the oldest estimates' horizons pass.</p>")
    cards = [("estimates scored", f"{n:,}"),
             ("80% range held the truth", _pct(overall.get("coverage"))),
             ("mean ETA error", "-" if overall.get("eta_mae_h") is None
              else spoken_duration(timedelta(hours=overall["eta_mae_h"]))),
             ("false alarms", str(overall.get("false_alarms", "-"))),
             ("misses", str(overall.get("missed", "-"))),
             ("Brier score", "-" if overall.get("brier") is None else f"{overall['brier']:.3f}")]
    return ('<div class="cards">' + "".join(f"<div class=card><b>{_e(v)}</b>{_e(k)}</div>"
                                            for k, v in cards) + "</div>")


def _anomalies(report: Report) -> str:
    parts = []
    if report.anomalies:
        parts.append(_table(["time (UTC)", "series", "score", "what"],
                            [[_when(a["ts"]), _e(a["unique_id"]), f"{a['score']:.3f}",
                              _e(a.get("detail") or "")] for a in report.anomalies[:40]],
                            numeric=(2,)))
        if len(report.anomalies) > 40:
            parts.append(f"<p>... and {len(report.anomalies) - 40} more.</p>")
    else:
        parts.append("<p>No anomaly this week.</p>")
    if report.events:
        parts.append("<h3>Events (they reset the history the forecasts learn from)</h3>" + _table(
            ["time (UTC)", "service", "kind", "detail"],
            [[_when(e["ts"]), _e(e["service"]), _e(e["kind"]), _e(e.get("detail") or "")]
             for e in report.events]))
    else:
        parts.append("<p>No event (deploy, model update) recorded this week.</p>")
    return "".join(parts)


def _what_if(report: Report) -> str:
    rows = []
    for p in report.plans:
        for w in p.what_if:
            rows.append([_e(p.service), f"x{w.factor:g}", _pct(w.headroom_peak[1]),
                         _when(w.saturation.eta_p50), _range(w.saturation.eta_p10,
                                                             w.saturation.eta_p90),
                         f"{w.saturation.p_saturation:.2f}",
                         _act_by(w.saturation.act_by, report.as_of)])
    if not rows:
        return "<p>No service has a learned capacity to scale against.</p>"
    return _table(["service", "demand", "headroom at peak", "saturation p50 (UTC)",
                   "80% range (UTC)", "p within horizon", "act by (UTC)"], rows,
                  numeric=(1, 2, 5))


def _method(report: Report) -> str:
    policies = _table(["metric", "service", "limit", "direction", "action", "lead time"],
                      [[_e(p["metric"]), _e(p["service"] or "any"), _num(p["limit"]),
                        _e(p["direction"]), _e(p["action"]),
                        _e(spoken_duration(timedelta(seconds=p["lead_time_s"])))]
                       for p in report.policies])
    return (
        "<p>Dates come from the published run named above: time to intervention from sample "
        "paths of each series' own forecast (statsforecast), first passage of the limit, "
        "recalibrated on the fleet's scored estimates. The 80% range is p10 to p90; act by is "
        "the start of the range minus the action's lead time.</p>"
        "<p>Capacity is learned from each service's last two weeks: hourly medians of load and "
        "of each load-driven metric with a limit, a queueing-shaped monotone curve (or an "
        "isotonic one when the data do not support a shape), bootstrapped in half-day blocks. "
        "The learned capacity is the load at which the first limit would be crossed; "
        "'extrapolated' means above the highest load seen. Demand is forecast as sample paths "
        "(trend, weekly profile, resampled days) and compared with every capacity draw. "
        "Assumptions: the latency-load relation of the last two weeks holds; a slow creep of "
        "latency is the latency forecast's to tell, not the capacity's.</p>"
        f"<h3>Policies in force</h3>{policies}")


def render(report: Report, inputs: Inputs) -> str:
    """The report as one HTML page (UTF-8)."""
    svg_cache: list[str] = []

    def svg(fig: Any) -> str:
        text = charts.to_svg(fig)
        svg_cache.append(text)
        return text

    # The runway chart is about demand: each bar takes the decision of the service's demand series.
    demand = {f"{p.service}:{p.load_metric}" for p in report.plans if p.load_metric}
    decisions = {row["service"]: row["decision"]
                 for row in inputs.interventions.iter_rows(named=True)
                 if row["unique_id"] in demand}
    horizon_weeks = 2.0
    urgent = sum(r.decision in ("breached", "act_now") for r in report.risks)
    scheduled = sum(r.decision == "schedule" for r in report.risks)
    saturating = [p.service for p in report.plans if p.saturation is not None
                  and p.saturation.eta_p50 is not None]
    sections = [
        f"<h1>Capacity planning, week {_e(report.week)}</h1>",
        f'<p class="sub">{_day(report.start)} to {_day(report.end - timedelta(days=1))} '
        f"(UTC). Answers of run {report.run_id} as of {clock_time(report.as_of)}; made "
        f"{clock_time(report.made_at)}.</p>",
        '<div class="cards">'
        f"<div class=card><b>{urgent}</b>to act on now</div>"
        f"<div class=card><b>{scheduled}</b>to schedule</div>"
        f"<div class=card><b>{len(saturating)}</b>services whose demand meets capacity within "
        "two weeks</div></div>",
        "<h2>1. Top risks: what must start first</h2>",
        _risks(report, inputs.interventions.filter(pl.col("decision") == "stale").height),
        "<h2>2. Headroom per service</h2>", _headroom_rows(report),
        _figure(svg(pictures.headroom_figure(report.plans, decisions, horizon_weeks)),
                "Weeks until the 30-day peak, growing at its trend, meets the learned capacity "
                "(bar: p50; whiskers: p10 to p90)."),
        "<h2>3. Per service</h2>",
        "".join(_service_section(p, inputs, report, svg) for p in report.plans),
        "<h2>4. What changed since last week</h2>", _changes(report),
        "<h2>5. How right the last weeks' estimates were</h2>", _scoring(report),
        "<h2>6. Precursor anomalies and events of the week</h2>", _anomalies(report),
        "<h2>7. What if demand grows</h2>", _what_if(report),
        "<h2>Method</h2>", _method(report),
    ]
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            f"<title>Capacity planning {_e(report.week)}</title>"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<style>{_CSS}</style></head><body>" + "".join(sections) + "</body></html>")
