"""``GET /metrics``: the latest published answers and the service's own health, in Prometheus
text format (built with prometheus_client, so any Prometheus parses it).

Per series (labels ``series``, ``service``, ``metric``): ``forecaster_eta_seconds`` (quantile
0.1/0.5/0.9, seconds from the run's as-of time; absent when too few paths cross),
``forecaster_p_breach`` (absent for a ``stale`` series), ``forecaster_act_by_seconds``,
``forecaster_freshness_seconds`` (age of its latest point at the run's as-of time). Per service:
``forecaster_decision`` (1 for its decision, 0 for the others) and ``forecaster_stale_series``
(how many of its series' data stopped: alert on ``forecaster_stale_series > 0``). For alert
rules (deploy/prometheus/forecaster-rules.yml): ``forecaster_answer_info`` (each series' decision
and action, value 1), ``forecaster_answer_reason_info`` (the reason, only for the decisions an
alert is about: free text that changes every run, so kept off the other series) and
``forecaster_as_of_timestamp_seconds`` (the run's as-of time, which the ``*_seconds`` values count
from). The service: last run id, age and duration, refresh runs and failures, the refresh
interval, rows ingested through it, anomalies and precursors of the latest run. Per Prometheus
source (label ``source``): ``forecaster_source_pull_errors_total``,
``forecaster_source_last_pull_timestamp_seconds`` and ``forecaster_source_last_pull_ok``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from forecaster.store.runs import INTERRUPTED
from forecaster.summary import service_answers
from forecaster.types import DECISIONS

if TYPE_CHECKING:
    from forecaster.service import Service
    from forecaster.store import Store

CONTENT_TYPE = CONTENT_TYPE_LATEST
# The decisions the shipped alert rules are about: their reasons are exported.
ALERTED = ("breached", "act_now", "schedule", "stale")


class _Collector:
    def __init__(self, store: Store, service: Service, run_id: int | None) -> None:
        self.store, self.service, self.run_id = store, service, run_id

    def collect(self) -> Iterator[Metric]:
        yield from self._answers()
        yield from self._service()
        yield from self._sources()

    def _answers(self) -> Iterator[Metric]:
        if self.run_id is None:
            return
        run = self.store.run(self.run_id)
        answers = self.store.interventions(self.run_id)
        if run is None:
            return
        as_of = run["as_of"]
        labels = ["series", "service", "metric"]
        eta = GaugeMetricFamily("forecaster_eta_seconds", "First-passage time quantile, seconds "
                                "after the run's as-of time", labels=[*labels, "quantile"])
        p = GaugeMetricFamily("forecaster_p_breach", "Probability the limit is crossed within "
                              "the horizon", labels=labels)
        act = GaugeMetricFamily("forecaster_act_by_seconds", "Seconds from the run's as-of time "
                                "to the act-by time (negative: overdue)", labels=labels)
        fresh = GaugeMetricFamily("forecaster_freshness_seconds", "Age of the series' latest "
                                  "point at the run's as-of time", labels=labels)
        stale = GaugeMetricFamily("forecaster_stale_series", "Series whose data stopped "
                                  "arriving (decision stale): a monitoring problem",
                                  labels=["service"])
        as_of_ts = GaugeMetricFamily("forecaster_as_of_timestamp_seconds", "The latest "
                                     "published run's as-of time (Unix seconds), which the "
                                     "per-series *_seconds values count from")
        as_of_ts.add_metric([], as_of.replace(tzinfo=UTC).timestamp())
        answer = InfoMetricFamily("forecaster_answer", "Each series' decision and the action "
                                  "its policy names", labels=labels)
        reason = InfoMetricFamily("forecaster_answer_reason", "The reason of each answer whose "
                                  "decision is " + ", ".join(ALERTED) + " (text that changes "
                                  "every run)", labels=labels)
        stale_by_service: dict[str, int] = {}
        for row in answers.iter_rows(named=True):
            key = [row["unique_id"], row["service"], row["metric"]]
            answer.add_metric(key, {"decision": row["decision"], "action": row["action"]})
            if row["decision"] in ALERTED:
                reason.add_metric(key, {"reason": row["reason"]})
            stale_by_service[row["service"]] = (stale_by_service.get(row["service"], 0)
                                                + (row["decision"] == "stale"))
            if row["freshness_s"] is not None:
                fresh.add_metric(key, float(row["freshness_s"]))
            if row["p_breach"] is not None:  # none when stale: no forecast was made
                p.add_metric(key, float(row["p_breach"]))
            for q, column in (("0.1", "eta_p10"), ("0.5", "eta_p50"), ("0.9", "eta_p90")):
                if row[column] is not None:
                    eta.add_metric([*key, q], (row[column] - as_of).total_seconds())
            if row["act_by"] is not None:
                act.add_metric(key, (row["act_by"] - as_of).total_seconds())
        decision = GaugeMetricFamily("forecaster_decision", "1 for the service's decision "
                                     "(its most urgent series), 0 for the others",
                                     labels=["service", "decision"])
        for row in service_answers(answers).iter_rows(named=True):
            for d in DECISIONS:
                decision.add_metric([row["service"], d], 1.0 if row["decision"] == d else 0.0)
        for service, count in sorted(stale_by_service.items()):
            stale.add_metric([service], float(count))
        found = self.store.anomalies(run_id=self.run_id)
        anomalies = GaugeMetricFamily("forecaster_anomalies", "Anomalies the latest run found "
                                      "in its lookback", labels=["service", "precursor"])
        if found.height:
            counts = found.group_by("service", "precursor").len()
            for row in counts.sort("service", "precursor").iter_rows(named=True):
                anomalies.add_metric([row["service"], str(row["precursor"]).lower()],
                                     float(row["len"]))
        yield from (eta, p, act, fresh, decision, stale, anomalies, as_of_ts, answer, reason)

    def _service(self) -> Iterator[Metric]:
        now = self.service.clock()
        last = GaugeMetricFamily("forecaster_last_published_run", "Id, age and duration of "
                                 "the latest published run", labels=["field"])
        if self.run_id is not None:
            run = self.store.run(self.run_id)
            if run is not None:
                last.add_metric(["id"], float(self.run_id))
                if run["finished_at"] is not None:
                    last.add_metric(["age_seconds"], (now - run["finished_at"]).total_seconds())
                    last.add_metric(["duration_seconds"],
                                    (run["finished_at"] - run["started_at"]).total_seconds())
        yield last
        job = self.service.refresh_status
        runs = CounterMetricFamily("forecaster_refresh_runs", "Refresh jobs run by this "
                                   "process", labels=["outcome"])
        runs.add_metric(["ok"], float(job.runs - job.failures))
        runs.add_metric(["failed"], float(job.failures))
        yield runs
        duration = GaugeMetricFamily("forecaster_refresh_last_duration_seconds",
                                     "Duration of the last refresh job")
        if job.last_duration_s is not None:
            duration.add_metric([], job.last_duration_s)
        yield duration
        interval = GaugeMetricFamily("forecaster_refresh_interval_seconds", "How often the "
                                     "refresh job runs (the refresh_every setting)")
        interval.add_metric([], self.service.settings.refresh_every.total_seconds())
        yield interval
        ingested = CounterMetricFamily("forecaster_ingest_rows", "Rows ingested by this process "
                                       "(API and configured sources)", labels=["kind", "outcome"])
        for (kind, outcome), rows in sorted(self.service.ingest_rows.items()):
            ingested.add_metric([kind, outcome], float(rows))
        yield ingested
        counts = self.store.counts()
        stored = GaugeMetricFamily("forecaster_stored", "Rows stored", labels=["table"])
        for table, n in counts.items():
            stored.add_metric([table], float(n))
        yield stored
        recent = self.store.runs(1000)
        status = recent.group_by("status").len()
        by_status = GaugeMetricFamily("forecaster_runs", "Runs recorded (newest 1000), by "
                                      "status", labels=["status"])
        for row in status.sort("status").iter_rows(named=True):
            by_status.add_metric([row["status"]], float(row["len"]))
        yield by_status
        interrupted = GaugeMetricFamily(
            "forecaster_runs_interrupted", "Runs recorded (newest 1000) that a process left "
            "running when it stopped, marked failed when the file was next opened")
        interrupted.add_metric([], float(recent.filter(
            recent["error"].str.starts_with(INTERRUPTED)).height))
        yield interrupted

    def _sources(self) -> Iterator[Metric]:
        """Per Prometheus source: failed pulls, and when the last one succeeded (alert on
        ``increase(forecaster_source_pull_errors_total[1h]) > 0``)."""
        from forecaster.sources.pulls import epoch_seconds

        errors = CounterMetricFamily("forecaster_source_pull_errors", "Failed pulls of each "
                                     "Prometheus source by this process", labels=["source"])
        last = GaugeMetricFamily("forecaster_source_last_pull_timestamp_seconds", "End of the "
                                 "last successful pull of each Prometheus source (Unix seconds)",
                                 labels=["source"])
        ok = GaugeMetricFamily("forecaster_source_last_pull_ok", "1 when the last pull of the "
                               "source succeeded, 0 when it failed", labels=["source"])
        for status in self.service.puller.statuses():
            errors.add_metric([status.source], float(status.failures))
            if status.pulled_until is not None:
                last.add_metric([status.source], epoch_seconds(status.pulled_until))
            if status.last_ok is not None:
                ok.add_metric([status.source], 1.0 if status.last_ok else 0.0)
        yield from (errors, last, ok)


def render(store: Store, service: Service, run_id: int | None) -> bytes:
    """The metrics text for the latest published run ``run_id``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(store, service, run_id))  # type: ignore[arg-type]
    return generate_latest(registry)


__all__ = ["CONTENT_TYPE", "render"]
