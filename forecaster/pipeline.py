"""One refresh: read what is stored, forecast, compute time to intervention, publish one run.

Everything a run computes is published in one transaction under one run id, so readers never
see half a refresh. A series that fails is recorded as failed in the run's provenance and the
others go on; only a failure outside any one series fails the run.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

import numpy as np
import polars as pl

from forecaster.config import Settings
from forecaster.engine.anomaly import AnomalySettings
from forecaster.engine.calibration import PassageCalibration, fit_frame
from forecaster.engine.forecast import (
    FALLBACK,
    Choice,
    ForecastSettings,
    Prepared,
    forecast,
    prepare,
    select_models,
)
from forecaster.engine.intervention import (
    DecisionSettings,
    ForecastDist,
    Freshness,
    Intervention,
    freshness,
    path_seed,
    stale_intervention,
    time_to_intervention,
    urgency_key,
)
from forecaster.engine.precursors import Anomaly, PrecursorSettings, SeriesInput, evidence, scan
from forecaster.engine.scales import inverse
from forecaster.policies import Policy, policy_for
from forecaster.store import Store

QUANTILES = {"q05": 0.05, "q10": 0.10, "q25": 0.25, "q50": 0.50, "q75": 0.75, "q90": 0.90,
             "q95": 0.95}
_HERMITE_X, _HERMITE_W = np.polynomial.hermite.hermgauss(12)
V = TypeVar("V")


@dataclass(slots=True)
class RunResult:
    """What one refresh did.

    Attributes:
        run_id: The run.
        status: ``published`` or ``failed``.
        series: Series with a policy.
        failed: Series that could not be computed (recorded, not published as answers).
        reselected: Series whose model was chosen anew in this run.
        anomalies: Anomaly onsets found in the lookback (every series of a watched service).
        precursors: How many of them are precursors (corroborated by another kind of metric).
        scored: Past estimates scored by this run (their horizon had passed).
        timings: Seconds spent in scoring past estimates, read, prepare, selection, forecast,
            anomalies, intervention and publish.
        interventions: The answers, most urgent first.
        error: Why the run failed, if it did.
    """

    run_id: int
    status: str
    series: int = 0
    failed: int = 0
    reselected: int = 0
    anomalies: int = 0
    precursors: int = 0
    scored: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    interventions: list[Intervention] = field(default_factory=list)
    error: str | None = None

    def summary(self) -> str:
        """One line a person can read."""
        timings = ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items())
        return (f"run {self.run_id} {self.status}: {self.series} series, {self.failed} failed, "
                f"{self.reselected} models chosen anew, {self.anomalies} anomalies "
                f"({self.precursors} precursors) ({timings})")


@dataclass(frozen=True, slots=True)
class Target:
    """A series with a policy: what a refresh answers for."""

    series_id: int
    unique_id: str
    service: str
    metric: str
    kind: str
    policy: Policy


def _mean_on_metric_scale(dist: ForecastDist) -> np.ndarray:
    # E[inverse(Z)] for Z ~ N(mean, sd), by Gauss-Hermite quadrature: the mean of a
    # back-transformed Gaussian is not the back-transformed mean.
    z = dist.mean[:, None] + np.sqrt(2.0) * dist.sd[:, None] * _HERMITE_X[None, :]
    return (inverse(z, dist.transform) * _HERMITE_W[None, :]).sum(axis=1) / np.sqrt(np.pi)


def _targets(store: Store, policies: tuple[Policy, ...]) -> tuple[
        list[Target], list[tuple[int, str, str, str]]]:
    """The series with a policy, and every series of their services (scanned for anomalies:
    a precursor needs the service's other metrics)."""
    targets = []
    series = store.series().to_dicts()
    for row in series:
        policy = policy_for(policies, row["service"], row["metric"])
        if policy is not None:
            targets.append(Target(row["series_id"], row["unique_id"], row["service"],
                                  row["metric"], row["kind"], policy))
    services = {t.service for t in targets}
    return targets, [(row["series_id"], row["service"], row["metric"], row["kind"])
                     for row in series if row["service"] in services]


def _latest_events(store: Store, now: datetime) -> dict[str, datetime]:
    events = store.events().filter(pl.col("ts") <= now)
    return {service: ts for service, ts in
            events.group_by("service").agg(pl.col("ts").max()).iter_rows()}


def run_once(
    store: Store,
    settings: Settings,
    policies: tuple[Policy, ...],
    now: datetime,
    *,
    trigger: str = "manual",
    reselect: bool = False,
    run_id: int | None = None,
    executor: Executor | None = None,
    clock: Callable[[], datetime] | None = None,
) -> RunResult:
    """Refresh once and publish the result as one run.

    A failure of the run as a whole (outside any one series) is recorded as a failed run, its
    traceback in the run's detail, and returned as a failed result: it is not raised.

    Args:
        store: The open database (this process is its only writer).
        settings: Thresholds, jobs, selection age, seed.
        policies: Which series to watch, their limits and actions.
        now: The time the answers are for (UTC, naive); later points are not read. It is the
            run's ``as_of``, which may be in the past (a replay).
        trigger: Who asked (``manual``, ``schedule``, ``api``), kept with the run.
        reselect: Re-make every model choice now, however recent.
        run_id: A run already recorded as started (by the service, which answers with its id
            before the work is done); default a new one.
        executor: Where the computation runs; default this thread. The service passes a
            process pool so that the computation never holds its API's interpreter lock; the
            store is read and written here either way (only this process may open it).
        clock: The wall-clock time (UTC, naive), read when the run starts and ends, for its
            ``started_at`` and ``finished_at``. Without it they are ``now`` plus the time
            elapsed, so that the run's duration is still true.

    Returns:
        The run's result; ``status`` is ``failed`` (and ``error`` says why) when the run as a
        whole failed.
    """
    started = time.perf_counter()
    started_at = clock() if clock is not None else now

    def wall() -> datetime:
        if clock is not None:
            return clock()
        return started_at + timedelta(seconds=time.perf_counter() - started)

    if run_id is None:
        run_id = store.start_run(started_at, now, trigger)
    result = RunResult(run_id=run_id, status="running")
    timings: dict[str, float] = {}
    try:
        with timed(timings, "scoring"):
            scored = store.score_estimates(now)
        with timed(timings, "read"):
            inputs = gather(store, policies, now, settings)
        args = (inputs, settings, now, run_id, reselect)
        computed = compute(*args) if executor is None else executor.submit(compute, *args).result()
        computed.result.timings = {**timings, **computed.result.timings}
        computed.result.scored = scored
        with timed(computed.result.timings, "publish"):
            detail = computed.detail(settings)  # its timings: every stage before publish
            store.publish_run(run_id, wall(), detail=detail, **computed.frames)
        result = computed.result
        result.status = "published"
    except Exception as exc:  # noqa: BLE001 - recorded as a failed run and returned as one
        result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
        detail = json.dumps({"traceback": traceback.format_exc()[-4000:]})
        store.fail_run(run_id, wall(), result.error, detail)
    finally:
        result.timings["total"] = time.perf_counter() - started
    return result


@contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Time the ``with`` block as ``stage``: its seconds are added to ``timings`` (after the
    stages timed before it) when the block completes; a block that raises adds nothing."""
    tick = time.perf_counter()
    yield
    timings[stage] = time.perf_counter() - tick


@dataclass(slots=True)
class Inputs:
    """What a refresh reads from the store; plain data, so it can go to another process.

    Attributes:
        targets: Series with a policy.
        scanned: (series id, service, metric, kind) of every series of their services.
        sids, ts, values: Their points up to now, sorted by series and time.
        events: The latest event of each service up to now.
        choices: Stored model choices by series id: (model, chosen at).
        reliability: Per series id, how right its scored estimates were (see
            forecaster.engine.reliability).
        calibration: The map of first-passage levels learned from the fleet's scored
            estimates (see forecaster.engine.calibration); None until they weigh enough.
    """

    targets: list[Target]
    scanned: list[tuple[int, str, str, str]]
    sids: np.ndarray
    ts: np.ndarray
    values: np.ndarray
    events: dict[str, datetime]
    choices: dict[int, tuple[str, datetime]]
    reliability: dict[int, dict[str, float | int | None]] = field(default_factory=dict)
    calibration: PassageCalibration | None = None


@dataclass(slots=True)
class Computed:
    """What a refresh computed: the result and the frames to publish."""

    result: RunResult
    frames: dict[str, pl.DataFrame]
    anomaly_failures: dict[int, str]
    calibration: dict[str, float] | None = None

    def detail(self, settings: Settings) -> str:
        r = self.result
        return json.dumps({"settings": settings.describe(), "series": r.series,
                           "failed": r.failed, "reselected": r.reselected,
                           "anomalies": r.anomalies, "precursors": r.precursors,
                           "anomaly_failures": self.anomaly_failures,
                           "calibration": self.calibration,
                           "timings": {k: round(v, 3) for k, v in r.timings.items()}})


def series_spans(sids: np.ndarray) -> dict[int, tuple[int, int]]:
    """Per series id, the (start, end) rows of its points in arrays sorted by series."""
    bounds = np.flatnonzero(np.diff(sids)) + 1
    starts = np.concatenate([[0], bounds]) if sids.size else np.array([], dtype=int)
    ends = np.concatenate([bounds, [sids.size]]) if sids.size else np.array([], dtype=int)
    return {int(sids[a]): (int(a), int(b)) for a, b in zip(starts, ends, strict=True)}


def gather(store: Store, policies: tuple[Policy, ...], now: datetime,
           settings: Settings) -> Inputs:
    """Read everything a refresh needs, up to ``now``."""
    targets, scanned = _targets(store, policies)
    points = store.points_up_to([sid for sid, *_ in scanned], now)
    since = now - settings.reliability_window
    per_series, _ = store.reliability(since=since)
    reliability: dict[int, dict[str, float | int | None]] = {}
    for row in per_series.iter_rows(named=True):
        sid = int(row.pop("series_id"))
        row.pop("unique_id")
        reliability[sid] = row
    record = store.calibration_record(since)
    return Inputs(targets=targets, scanned=scanned,
                  sids=points.column("series_id").to_numpy(),
                  ts=points.column("ts").to_numpy().astype("datetime64[us]"),
                  values=points.column("value").to_numpy(),
                  events=_latest_events(store, now), choices=store.model_choices(),
                  reliability=reliability,
                  calibration=fit_frame(record, settings.calibration_prior,
                                        settings.calibration_min_weight))


def compute(inputs: Inputs, settings: Settings, now: datetime, run_id: int,
            reselect: bool) -> Computed:
    """Prepare, choose models, forecast, find anomalies and answer: pure computation on
    ``inputs`` (no store), safe to run in another process.

    Each stage is timed under its name in the result's ``timings``. A series that fails in a
    stage is recorded as failed (with the stage and the error) and left out of the later ones.
    """
    ctx = _context(inputs, settings, now)
    failures: dict[str, str] = {}
    timings: dict[str, float] = {}
    with timed(timings, "prepare"):
        prepared, stale = _prepare(ctx, failures)
    with timed(timings, "selection"):
        models, new_choices = _select(ctx, prepared, stale, reselect)
    with timed(timings, "forecast"):
        dists = _forecast(ctx, prepared, stale, models, failures)
    with timed(timings, "anomalies"):
        found, anomaly_failures = _anomalies(ctx)
    with timed(timings, "intervention"):
        answers = _answer(ctx, prepared, stale, dists, found, failures)

    result = RunResult(run_id=run_id, status="running", series=len(inputs.targets),
                       failed=len(failures), reselected=len(new_choices),
                       anomalies=len(found), precursors=sum(a.precursor for a in found),
                       timings=timings,
                       interventions=sorted(answers.values(), key=urgency_key))
    frames = _frames(run_id, inputs.targets, prepared, dists, answers, failures, new_choices,
                     ctx.spans, inputs.ts, now, inputs.reliability)
    frames["anomalies"] = _anomaly_frame(run_id, found, settings.anomaly_detector)
    return Computed(result=result, frames=frames, anomaly_failures=anomaly_failures,
                    calibration=inputs.calibration.describe() if inputs.calibration else None)


@dataclass(frozen=True, slots=True)
class _Context:
    """What every stage of one computation reads: its inputs and settings, unpacked once.

    Attributes:
        inputs: What the refresh read.
        settings: The run's settings.
        now: The time the answers are for.
        spans: Per series id, its rows in ``inputs``' point arrays.
        by_uid: The targets by unique id.
        forecasting: Settings of preparation, model selection and forecasts.
        decision: Settings of the answers (thresholds, sample paths, staleness).
    """

    inputs: Inputs
    settings: Settings
    now: datetime
    spans: dict[int, tuple[int, int]]
    by_uid: dict[str, Target]
    forecasting: ForecastSettings
    decision: DecisionSettings


def _context(inputs: Inputs, settings: Settings, now: datetime) -> _Context:
    decision = DecisionSettings(p_schedule=settings.p_schedule, p_watch=settings.p_watch,
                                n_paths=settings.sample_paths,
                                refresh_every=settings.refresh_every,
                                rounds=settings.sample_rounds,
                                stale_intervals=settings.stale_intervals,
                                stale_min=settings.stale_min)
    return _Context(inputs=inputs, settings=settings, now=now,
                    spans=series_spans(inputs.sids),
                    by_uid={t.unique_id: t for t in inputs.targets},
                    forecasting=ForecastSettings(n_jobs=settings.forecast_jobs),
                    decision=decision)


def _prepare(ctx: _Context, failures: dict[str, str]
             ) -> tuple[list[Prepared], dict[str, Freshness]]:
    """Judge each target's freshness and prepare its points for the models.

    Returns:
        The prepared series, and by unique id the freshness of those that are stale (they are
        answered as such, not forecast).
    """
    inputs = ctx.inputs
    prepared: list[Prepared] = []
    stale: dict[str, Freshness] = {}
    for target in inputs.targets:
        if target.series_id not in ctx.spans:
            failures[target.unique_id] = "no points up to now"
            continue
        a, b = ctx.spans[target.series_id]
        judged = freshness(inputs.ts[a:b], target.policy, ctx.now, ctx.decision)
        if judged.stale:
            stale[target.unique_id] = judged
        try:
            item = prepare(target.unique_id, inputs.ts[a:b], inputs.values[a:b],
                           kind=target.kind, step=target.policy.freq,
                           direction=target.policy.direction, now=ctx.now,
                           event_at=inputs.events.get(target.service), settings=ctx.forecasting)
        except Exception as exc:  # noqa: BLE001 - one bad series never fails the run
            failures[target.unique_id] = f"prepare: {type(exc).__name__}: {exc}"
            continue
        if item is not None:
            prepared.append(item)
    return prepared, stale


def _select(ctx: _Context, prepared: list[Prepared], stale: dict[str, Freshness],
            reselect: bool) -> tuple[dict[str, str], dict[str, Choice]]:
    """Choose anew the model of each series whose stored choice is missing or too old (of
    every series with ``reselect``); the others keep theirs, or the fallback.

    A stale series has no model chosen (the choice is made when its feed resumes): a fleet
    whose feed stopped costs nothing but the answers saying so. A failed selection keeps the
    previous choice or the fallback, which is no failure of the series.

    Returns:
        The model of every prepared series by unique id, and the choices made anew.
    """
    stored = ctx.inputs.choices
    oldest = ctx.now - ctx.settings.selection_max_age

    def series_id(item: Prepared) -> int:
        return ctx.by_uid[item.unique_id].series_id

    due = [p for p in prepared if p.unique_id not in stale and (
           reselect or series_id(p) not in stored or stored[series_id(p)][1] < oldest)]
    new_choices = _isolated(lambda items: select_models(items, ctx.forecasting), due,
                            "selection", failures=None)
    models = {p.unique_id: stored.get(series_id(p), (FALLBACK,))[0] for p in prepared}
    models.update({uid: choice.model for uid, choice in new_choices.items()})
    return models, new_choices


def _forecast(ctx: _Context, prepared: list[Prepared], stale: dict[str, Freshness],
              models: dict[str, str], failures: dict[str, str]
              ) -> dict[str, tuple[ForecastDist, str]]:
    """Forecast every series that is not stale over its policy's horizon.

    Returns:
        By unique id, the forecast distribution and the model that made it.
    """
    horizons = {p.unique_id: ctx.by_uid[p.unique_id].policy.steps for p in prepared}
    return _isolated(lambda items: forecast(items, models, horizons, ctx.forecasting),
                     [p for p in prepared if p.unique_id not in stale], "forecast", failures)


def _anomalies(ctx: _Context) -> tuple[list[Anomaly], dict[int, str]]:
    """Scan every series of the watched services (a precursor needs the service's other
    metrics) for anomaly onsets in the lookback.

    Returns:
        The onsets found, and why the scan of a series failed, by series id.
    """
    inputs, spans = ctx.inputs, ctx.spans
    return scan((SeriesInput(sid, service, metric, kind, inputs.ts[slice(*spans[sid])],
                             inputs.values[slice(*spans[sid])])
                 for sid, service, metric, kind in inputs.scanned if sid in spans),
                ctx.now, _precursor_settings(ctx.settings))


def _answer(ctx: _Context, prepared: list[Prepared], stale: dict[str, Freshness],
            dists: dict[str, tuple[ForecastDist, str]], found: list[Anomaly],
            failures: dict[str, str]) -> dict[str, Intervention]:
    """The time to intervention of every series that is stale or was forecast, with the
    anomalies that are its evidence.

    Returns:
        The answers by unique id.
    """
    settings, now = ctx.settings, ctx.now
    answers: dict[str, Intervention] = {}
    for item in prepared:
        target = ctx.by_uid[item.unique_id]
        found_here = evidence(found, target.series_id, now, settings.anomaly_fresh)
        if item.unique_id in stale:
            answers[item.unique_id] = stale_intervention(
                item.unique_id, target.policy, item.observation, stale[item.unique_id], now,
                ctx.decision, evidence=found_here)
            continue
        if item.unique_id not in dists:
            continue
        dist, _ = dists[item.unique_id]
        # Seeded by the series' name, not its storage id: the same data, the same answer.
        rng = np.random.default_rng(path_seed(settings.seed, item.unique_id))
        try:
            answers[item.unique_id] = time_to_intervention(
                item.unique_id, dist, target.policy, item.observation, now, ctx.decision, rng,
                evidence=found_here, calibration=ctx.inputs.calibration)
        except Exception as exc:  # noqa: BLE001
            failures[item.unique_id] = f"intervention: {type(exc).__name__}: {exc}"
    return answers


def _isolated(
    step: Callable[[list[Prepared]], dict[str, V]], items: list[Prepared], stage: str,
    failures: dict[str, str] | None,
) -> dict[str, V]:
    """Run ``step`` on all items at once; if that fails, item by item, so one bad series cannot
    sink the rest. An item that fails alone is recorded in ``failures`` under ``stage``; with
    no ``failures``, it is left out."""
    if not items:
        return {}
    try:
        return step(items)
    except Exception:  # noqa: BLE001
        out: dict[str, V] = {}
        for item in items:
            try:
                out.update(step([item]))
            except Exception as exc:  # noqa: BLE001
                if failures is not None:
                    failures[item.unique_id] = f"{stage}: {type(exc).__name__}: {exc}"
        return out


def _precursor_settings(settings: Settings) -> PrecursorSettings:
    return PrecursorSettings(detector=AnomalySettings(detector=settings.anomaly_detector),
                             threshold=settings.anomaly_threshold,
                             lookback=settings.anomaly_lookback, fresh=settings.anomaly_fresh,
                             corroboration=settings.anomaly_corroboration)


def _anomaly_frame(run_id: int, found: list[Anomaly], detector: str) -> pl.DataFrame:
    return pl.DataFrame([{
        "run_id": run_id, "series_id": a.series_id, "service": a.service, "metric": a.metric,
        "ts": a.ts, "score": a.score, "is_anomaly": True, "detector": detector,
        "features": json.dumps(a.features), "detail": a.detail, "precursor": a.precursor,
        "corroborated_by": ",".join(a.corroborated_by) or None,
    } for a in found], infer_schema_length=None)


def _frames(
    run_id: int, targets: list[Target], prepared: list[Prepared],
    dists: dict[str, tuple[ForecastDist, str]], answers: dict[str, Intervention],
    failures: dict[str, str], new_choices: dict[str, Choice], spans: dict[int, tuple[int, int]],
    ts: np.ndarray, now: datetime, reliability: dict[int, dict[str, float | int | None]],
) -> dict[str, pl.DataFrame]:
    items = {p.unique_id: p for p in prepared}
    series_rows, forecast_parts, answer_rows = [], [], []
    for target in targets:
        uid, sid = target.unique_id, target.series_id
        item = items.get(uid)
        last_point = (ts[spans[sid][1] - 1].astype("datetime64[us]").item()
                      if sid in spans else None)
        model = dists[uid][1] if uid in dists else None
        answer = answers.get(uid)
        status = "failed" if uid in failures else "stale" if (
            answer is not None and answer.decision == "stale") else (
            "fallback" if model == FALLBACK or (item and item.degenerate) else "ok")
        series_rows.append({
            "run_id": run_id, "series_id": sid, "status": status, "model": model,
            "transform": item.transform.value if item else None,
            "train_start": item.train_start if item else None,
            "train_end": item.observation.last_ts if item else None,
            "n_train": int(item.y.size) if item else None,
            "last_point": last_point,
            "freshness_s": (now - last_point).total_seconds() if last_point else None,
            "flags": ",".join(item.flags) if item and item.flags else None,
            "error": failures.get(uid),
        })
        if uid in dists and uid in answers:
            dist = dists[uid][0]
            part = {"ds": dist.ds, "mean": _mean_on_metric_scale(dist)}
            part.update({name: dist.quantile(q) for name, q in QUANTILES.items()})
            forecast_parts.append(pl.DataFrame(part).with_columns(
                run_id=pl.lit(run_id, pl.Int64), series_id=pl.lit(sid, pl.Int32)))
        if answer is not None:
            answer_rows.append({
                "run_id": run_id, "series_id": sid, "service": target.service,
                "metric": target.metric, "limit_value": answer.limit,
                "direction": answer.direction, "action": answer.action,
                "lead_time_s": answer.lead_time.total_seconds(), "eta_p10": answer.eta_p10,
                "eta_p50": answer.eta_p50, "eta_p90": answer.eta_p90,
                "p_breach": answer.p_breach, "p_breach_raw": answer.p_raw,
                "passage": list(answer.passage) if answer.passage else None,
                "act_by": answer.act_by,
                "decision": answer.decision, "next_check_at": answer.next_check_at,
                "reason": answer.reason, "last_value": answer.last_value,
                "precursor_score": max((e.score for e in answer.evidence), default=None),
                "precursors": json.dumps([{"ts": e.ts.isoformat(), "score": round(e.score, 4),
                                           "detail": e.detail} for e in answer.evidence])
                if answer.evidence else None,
                "horizon_s": target.policy.horizon.total_seconds(),
                "reliability": json.dumps(reliability[sid]) if sid in reliability else None,
            })
    by_uid = {t.unique_id: t.series_id for t in targets}
    choices = pl.DataFrame([{
        "series_id": by_uid[uid], "model": choice.model, "score": choice.score,
        "scores": json.dumps(choice.scores), "chosen_at": now,
    } for uid, choice in new_choices.items()])
    return {
        "run_series": pl.DataFrame(series_rows, infer_schema_length=None),
        "forecasts": pl.concat(forecast_parts) if forecast_parts else pl.DataFrame(),
        "interventions": pl.DataFrame(answer_rows, infer_schema_length=None),
        "choices": choices,
    }
