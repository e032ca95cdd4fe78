"""Real LLM serving traces (../shared/data/llm_traces) ingested as request logs.

Requests per second and tokens per second of every 5-minute bucket are checked against an
independent polars computation over the same files.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from conftest import SHARED_DATA

from forecaster.ingest_report import IngestReport
from forecaster.sources.files import ReadSpec, ingest_files
from forecaster.store import Store

TRACES = SHARED_DATA / "llm_traces"
pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not TRACES.is_dir(),
                       reason=f"public traces not found at {TRACES} (outside the workspace)"),
]

AZURE = ReadSpec(columns={"ts": "TIMESTAMP", "prompt_tokens": "ContextTokens",
                          "completion_tokens": "GeneratedTokens"})
MOONCAKE = ReadSpec(columns={"ts": "timestamp", "prompt_tokens": "input_length",
                             "completion_tokens": "output_length"},
                    time_unit="ms", ignore_extra=True, service="mooncake")


def polars_buckets(frame: pl.DataFrame) -> pl.DataFrame:
    """Requests and tokens per second of each 5-minute bucket, from (ts, tokens) rows."""
    return (frame.group_by(pl.col("ts").dt.truncate("5m").alias("ds"))
            .agg((pl.len() / 300.0).alias("requests_per_s"),
                 (pl.col("tokens").sum() / 300.0).alias("tokens_per_s"))
            .sort("ds"))


def stored_buckets(store: Store, service: str) -> pl.DataFrame:
    history = store.history(service=service)
    return (history.with_columns(pl.col("unique_id").str.split(":").list.get(1).alias("metric"))
            .pivot(on="metric", index="ds", values="y")
            .select("ds", "requests_per_s", "tokens_per_s").sort("ds"))


def check(store: Store, service: str, expected: pl.DataFrame) -> None:
    got = stored_buckets(store, service)
    assert got["ds"].to_list() == expected["ds"].to_list()
    for column in ("requests_per_s", "tokens_per_s"):
        assert got[column].to_list() == pytest.approx(expected[column].to_list(), rel=1e-12)


@pytest.mark.parametrize("name", ["code", "conv"])
def test_azure_2023_trace(name: str, tmp_path: Path, now: datetime) -> None:
    path = TRACES / "azure_2023" / f"AzureLLMInferenceTrace_{name}.csv"
    spec = ReadSpec(columns=AZURE.columns, service=f"azure-{name}")
    with Store.open(tmp_path / "azure.duckdb", now=now) as store:
        [report] = ingest_files(store, [path], "requests", spec, now)
        assert isinstance(report, IngestReport) and report.rejected == 0, report
        raw = pl.read_csv(path)
        assert report.rows == report.requests_stored == raw.height
        expected = polars_buckets(raw.select(
            pl.col("TIMESTAMP").str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us")
            .alias("ts"),
            (pl.col("ContextTokens") + pl.col("GeneratedTokens")).alias("tokens")))
        assert expected.height >= 12  # about an hour of 5-minute buckets
        check(store, f"azure-{name}", expected)


def test_mooncake_trace(tmp_path: Path, now: datetime) -> None:
    path = TRACES / "mooncake" / "conversation_trace.jsonl"
    with Store.open(tmp_path / "mooncake.duckdb", now=now) as store:
        [report] = ingest_files(store, [path], "requests", MOONCAKE, now)
        assert isinstance(report, IngestReport) and report.rejected == 0, report
        raw = pl.read_ndjson(path)
        assert report.rows == report.requests_stored == raw.height
        expected = polars_buckets(raw.select(
            pl.from_epoch(pl.col("timestamp"), time_unit="ms").alias("ts"),
            (pl.col("input_length") + pl.col("output_length")).alias("tokens")))
        check(store, "mooncake", expected)
        # Requests that share a timestamp (the trace has many) are all kept.
        assert store.counts()["requests"] == raw.height
