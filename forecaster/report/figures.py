"""The report's figures from a run's answers: top risks, what changed since a week before, and the
week's self-scoring. Pure: frames in, records out (no store, no clock)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from forecaster.types import DECISIONS

# Answers that call for an action or a closer look, in the report's "top risks" and "what changed".
RISKY = ("breached", "act_now", "schedule", "watch")

# A date "moved" when its median moved by more than this share of the time left to it, and at
# least MIN_MOVE: an estimate two weeks out that moves by an hour has not changed in any way a
# planner acts on.
MOVE_SHARE = 0.1
MIN_MOVE = timedelta(hours=6)


@dataclass(frozen=True, slots=True)
class Risk:
    """One intervention that must start soon, as the run published it.

    Attributes:
        unique_id: ``service:metric``.
        service: The service.
        metric: The metric.
        decision: The run's decision (``breached``, ``act_now``, ``schedule``, ``watch``).
        action: What crossing calls for.
        lead_time_s: How long the action takes, in seconds.
        limit: The policy's limit.
        direction: ``above`` or ``below``.
        p_breach: Probability of a crossing within the horizon.
        eta_p10: Earliest likely crossing (80% range start).
        eta_p50: Median crossing.
        eta_p90: Latest likely crossing (80% range end).
        act_by: When the action must start.
        reason: Why, in a sentence.
    """

    unique_id: str
    service: str
    metric: str
    decision: str
    action: str
    lead_time_s: float
    limit: float
    direction: str
    p_breach: float | None
    eta_p10: datetime | None
    eta_p50: datetime | None
    eta_p90: datetime | None
    act_by: datetime | None
    reason: str


@dataclass(frozen=True, slots=True)
class Moved:
    """A risk whose median date moved since the run a week before.

    Attributes:
        unique_id: ``service:metric``.
        was: The median date a week before.
        now: The median date now.
        shift_s: ``now - was`` in seconds (negative: earlier, more urgent).
    """

    unique_id: str
    was: datetime
    now: datetime
    shift_s: float


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed between the run a week before and this one.

    Attributes:
        previous_run_id: The run compared with; None when there was none (nothing to compare).
        new: Risks now that were not risks then (or not answered then).
        resolved: Risks then that are answered ``ok`` now.
        unanswered: Risks then that get no answer now (``stale``: their data stopped; or no
            longer answered at all): not resolved, only unknown.
        moved: Risks in both whose median date moved (see ``MOVE_SHARE``, ``MIN_MOVE``).
        escalated: Risks in both whose decision became more urgent (``watch`` -> ``schedule``).
        unchanged: How many risks are in both and neither moved nor escalated.
    """

    previous_run_id: int | None
    new: list[Risk]
    resolved: list[dict[str, Any]]
    moved: list[Moved]
    escalated: list[dict[str, Any]]
    unchanged: int
    unanswered: list[dict[str, Any]] = field(default_factory=list)


def _risk(row: dict[str, Any]) -> Risk:
    return Risk(
        unique_id=row["unique_id"], service=row["service"], metric=row["metric"],
        decision=row["decision"], action=row["action"], lead_time_s=float(row["lead_time_s"]),
        limit=float(row["limit_value"]), direction=row["direction"], p_breach=row["p_breach"],
        eta_p10=row["eta_p10"], eta_p50=row["eta_p50"], eta_p90=row["eta_p90"],
        act_by=row["act_by"], reason=row["reason"])


def _rank(frame: pl.DataFrame) -> pl.DataFrame:
    """Risky answers, the ones that must start first first: by decision (a breach is already
    late), then by act-by, then by median date."""
    order: dict[str, int] = {d: k for k, d in enumerate(DECISIONS)}
    return (frame.filter(pl.col("decision").is_in(RISKY))
            .with_columns(pl.col("decision").replace_strict(order, return_dtype=pl.Int32)
                          .alias("_order"))
            .sort(["_order", "act_by", "eta_p50", "unique_id"], nulls_last=True)
            .drop("_order"))


def top_risks(interventions: pl.DataFrame, limit: int | None = None) -> list[Risk]:
    """The interventions that must start first, ranked by act-by.

    Args:
        interventions: A run's answers (``Store.interventions``).
        limit: At most this many; None for all.
    """
    ranked = _rank(interventions)
    if limit is not None:
        ranked = ranked.head(limit)
    return [_risk(row) for row in ranked.iter_rows(named=True)]


def _moved(was: datetime, now: datetime, as_of: datetime) -> bool:
    threshold = max(MIN_MOVE, (max(now, was) - as_of) * MOVE_SHARE)
    return abs(now - was) > threshold


def changes(current: pl.DataFrame, previous: pl.DataFrame | None,
            previous_run_id: int | None, as_of: datetime) -> Changes:
    """Compare this run's risks with those of the run a week before.

    Args:
        current: This run's answers.
        previous: The answers of the run a week before; None when there is none.
        previous_run_id: That run's id.
        as_of: This run's as-of time (how far away a date is decides whether its move counts).
    """
    now_risks = {r.unique_id: r for r in top_risks(current)}
    if previous is None:
        return Changes(None, [], [], [], [], 0)
    then_risks = {r.unique_id: r for r in top_risks(previous)}
    decisions_now = dict(zip(current["unique_id"].to_list(), current["decision"].to_list(),
                             strict=True))
    order: dict[str, int] = {d: k for k, d in enumerate(DECISIONS)}
    new = [r for uid, r in now_risks.items() if uid not in then_risks]
    gone = [{"unique_id": uid, "was": r.decision, "now": decisions_now.get(uid, "absent"),
             "was_eta_p50": r.eta_p50}
            for uid, r in then_risks.items() if uid not in now_risks]
    resolved = [g for g in gone if g["now"] == "ok"]
    unanswered = [g for g in gone if g["now"] != "ok"]
    moved: list[Moved] = []
    escalated: list[dict[str, Any]] = []
    unchanged = 0
    for uid, r in now_risks.items():
        before = then_risks.get(uid)
        if before is None:
            continue
        changed = False
        if order[r.decision] < order[before.decision]:
            escalated.append({"unique_id": uid, "was": before.decision, "now": r.decision})
            changed = True
        if r.eta_p50 is not None and before.eta_p50 is not None and _moved(
                before.eta_p50, r.eta_p50, as_of):
            moved.append(Moved(uid, before.eta_p50, r.eta_p50,
                               (r.eta_p50 - before.eta_p50).total_seconds()))
            changed = True
        unchanged += not changed
    moved.sort(key=lambda m: m.shift_s)
    return Changes(previous_run_id, new, resolved, moved, escalated, unchanged, unanswered)
