from datetime import timedelta
from pathlib import Path

import pytest
from conftest import write

from forecaster.errors import ConfigError
from forecaster.policies import (
    DEFAULT_POLICIES,
    load_policies,
    parse_duration,
    policy_for,
)
from forecaster.wording import format_duration


def test_durations_round_trip() -> None:
    assert parse_duration("1d12h") == timedelta(hours=36)
    assert parse_duration("30m") == timedelta(minutes=30)
    assert parse_duration("2w") == timedelta(days=14)
    assert format_duration(timedelta(hours=36)) == "1d12h"
    for text in ("", "5", "1x", "h"):
        with pytest.raises(ValueError, match="is not a duration"):
            parse_duration(text)


def test_defaults_cover_the_fleet_metrics() -> None:
    metrics = {p.metric for p in DEFAULT_POLICIES}
    assert {"latency_p95_ms", "error_rate", "quality_score",
            "negative_feedback_rate"} <= metrics
    quality = policy_for(DEFAULT_POLICIES, "any", "quality_score")
    assert quality is not None and quality.direction == "below" and quality.action == "retrain"
    assert policy_for(DEFAULT_POLICIES, "any", "tokens_per_s") is None


def test_the_most_specific_rule_wins(tmp_path: Path) -> None:
    path = write(tmp_path / "p.toml", """
[[policy]]
metric = "latency_*"
limit = 100
direction = "above"
action = "investigate"
lead_time = "1h"

[[policy]]
metric = "latency_p95_ms"
service = "code-*"
limit = 200
direction = "above"
action = "scale_out"
lead_time = "3h"
horizon = "7d"

[[policy]]
metric = "latency_p95_ms"
service = "code-assist"
limit = 300
direction = "above"
action = "my-own-runbook"
lead_time = "30m"
""")
    policies = load_policies(path)
    assert policy_for(policies, "code-assist", "latency_p95_ms").limit == 300  # type: ignore[union-attr]
    assert policy_for(policies, "code-review", "latency_p95_ms").limit == 200  # type: ignore[union-attr]
    assert policy_for(policies, "chat", "latency_p95_ms").limit == 1500  # default: exact metric
    assert policy_for(policies, "chat", "latency_p50_ms").limit == 100  # type: ignore[union-attr]
    assert policy_for(policies, "code-review", "latency_p95_ms").steps == 7 * 24  # type: ignore[union-attr]


@pytest.mark.parametrize(("body", "line", "problem"), [
    ('metric = "x"\nlimit = 1\ndirection = "sideways"\naction = "rollback"\nlead_time = "1h"\n',
     5, "direction 'sideways' is not one of above, below"),
    ('metric = "x"\ndirection = "above"\naction = "rollback"\nlead_time = "1h"\n',
     2, "missing 'limit'"),
    ('metric = "x"\nlimit = 1\ndirection = "above"\naction = "rollback"\nlead_time = "soon"\n',
     7, "'soon' is not a duration"),
    ('metric = "x"\nlimit = 1\ndirection = "above"\naction = "rollback"\nlead_time = "1h"\n'
     'colour = "red"\n', 8, "unknown key 'colour'"),
    ('metric = "x y"\nlimit = 1\ndirection = "above"\naction = "rollback"\nlead_time = "1h"\n',
     3, "is not a name or glob"),
    ('metric = "x"\nlimit = nan\ndirection = "above"\naction = "rollback"\nlead_time = "1h"\n',
     4, "is not a finite number"),
    ('metric = "x"\nlimit = 1\ndirection = "above"\naction = "rollback"\nlead_time = "1h"\n'
     'stale_after = "later"\n', 8, "stale_after: 'later' is not a duration"),
    ('metric = "x"\nlimit = 1\ndirection = "above"\naction = "rollback"\nlead_time = "1h"\n'
     'stale_after = "0m"\n', 8, "stale_after must be longer than 0s"),
])
def test_a_bad_policy_is_refused_with_its_line(tmp_path: Path, body: str, line: int,
                                               problem: str) -> None:
    path = write(tmp_path / "bad.toml", "# policies\n[[policy]]\n" + body)
    with pytest.raises(ConfigError) as info:
        load_policies(path)
    assert f"bad.toml: line {line} (policy 1)" in str(info.value)
    assert problem in str(info.value)


def test_a_file_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.toml", "[[policy]\nmetric = 1\n")
    with pytest.raises(ConfigError, match=r"broken\.toml.*line 1"):
        load_policies(path)


def test_a_policy_may_say_when_its_series_is_stale(tmp_path: Path) -> None:
    path = write(tmp_path / "p.toml", """
[[policy]]
metric = "error_rate"
service = "batch-*"
limit = 0.1
direction = "above"
action = "rollback"
lead_time = "1h"
stale_after = "1d6h"
""")
    policies = load_policies(path)
    batch = policy_for(policies, "batch-embed", "error_rate")
    assert batch is not None and batch.stale_after == timedelta(days=1, hours=6)
    chat = policy_for(policies, "chat", "error_rate")  # the default: judged by its interval
    assert chat is not None and chat.stale_after is None
