import pytest

from forecaster.kinds import MetricKind, metric_kind
from forecaster.names import is_valid_name, split_unique_id, unique_id


@pytest.mark.parametrize(("metric", "kind"), [
    ("latency_p95_ms", MetricKind.LATENCY),
    ("ttft_p95_ms", MetricKind.LATENCY),
    ("queue_wait_seconds", MetricKind.LATENCY),
    ("error_rate", MetricKind.RATIO),
    ("cache_hit_ratio", MetricKind.RATIO),
    ("judge_score", MetricKind.SCORE),
    ("quality_score", MetricKind.SCORE),
    ("requests_per_s", MetricKind.THROUGHPUT),
    ("rps", MetricKind.THROUGHPUT),
    ("gpu_memory_used", MetricKind.GAUGE),
    ("gpu_utilization", MetricKind.PERCENT),
    ("kv_cache_usage_pct", MetricKind.PERCENT),
    ("ec2_cpu_utilization_24ae8d", MetricKind.PERCENT),
])
def test_metric_kind_follows_the_name(metric: str, kind: MetricKind) -> None:
    assert metric_kind(metric) is kind


def test_names_and_unique_ids() -> None:
    assert is_valid_name("rag-search.v2_eu")
    assert not is_valid_name("has space")
    assert not is_valid_name("")
    assert not is_valid_name("x" * 201)
    assert split_unique_id(unique_id("chat-api", "error_rate")) == ("chat-api", "error_rate")
    with pytest.raises(ValueError, match="service:metric"):
        split_unique_id("no-colon")
