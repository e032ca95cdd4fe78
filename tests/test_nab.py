"""NAB scoring rules on small hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from forecaster.engine.nab import PROFILES, Labels, normalise, score_file, sigma, sweep, window_rows

STANDARD = PROFILES[0]
# 100 rows: the probationary period is min(floor(15.0), 750) = 15 rows; one window of 10 rows.
LABELS = Labels(100, ((50, 59),))
SIGMA_MINUS_1 = 2 / (1 + math.exp(-5)) - 1  # 0.986614...


def detect(*rows: int) -> np.ndarray:
    out = np.zeros(100, dtype=bool)
    out[list(rows)] = True
    return out


def test_sigma_golden_values() -> None:
    assert sigma(0.0) == 0.0
    assert sigma(-1.0) == pytest.approx(0.9866142981514305)  # 2/(1+e^-5) - 1
    assert sigma(0.5) == pytest.approx(2 / (1 + math.exp(2.5)) - 1)  # -0.848283...
    assert sigma(3.01) == -1.0


def test_a_detection_at_the_start_of_the_window_earns_full_credit() -> None:
    # y = -(59 - 50 + 1) / 10 = -1, so the credit is sigma(-1) / sigma(-1) = 1
    assert score_file(detect(50), LABELS, STANDARD) == pytest.approx(1.0)


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    # earliest is row 52: y = -(59 - 52 + 1) / 10 = -0.8; sigma(-0.8) = 2/(1+e^-4) - 1
    expected = (2 / (1 + math.exp(-4)) - 1) / SIGMA_MINUS_1  # 0.977105...
    assert score_file(detect(52, 55, 58), LABELS, STANDARD) == pytest.approx(expected)
    assert expected == pytest.approx(0.97710, abs=1e-5)


def test_a_missed_window_costs_a_fn() -> None:
    assert score_file(detect(), LABELS, STANDARD) == -1.0
    assert score_file(detect(), LABELS, PROFILES[2]) == -2.0  # reward_low_FN_rate


def test_false_positives_before_and_after_a_window() -> None:
    # before the first window: -A_FP each; the window itself is missed (-1)
    assert score_file(detect(20, 30), LABELS, STANDARD) == pytest.approx(-1.0 - 2 * 0.11)
    # 5 rows after the window's end: y = |64 - 59| / (10 - 1) = 0.5556
    near = 0.11 * (2 / (1 + math.exp(5 * 5 / 9)) - 1)  # -0.09712...
    assert score_file(detect(50, 64), LABELS, STANDARD) == pytest.approx(1.0 + near)
    assert near == pytest.approx(-0.09712, abs=1e-5)
    # far after (y = 40/9 > 3): the full -A_FP
    assert score_file(detect(50, 99), LABELS, STANDARD) == pytest.approx(1.0 - 0.11)


def test_the_probationary_period_is_not_scored() -> None:
    assert LABELS.probation == 15
    assert Labels(10_000, ()).probation == 750
    assert score_file(detect(3, 14, 50), LABELS, STANDARD) == pytest.approx(1.0)


def test_normalisation() -> None:
    # null (never fires) scores 0, perfect scores 100, halfway between them 50
    assert normalise(-2.0, 2, STANDARD) == 0.0
    assert normalise(2.0, 2, STANDARD) == 100.0
    assert normalise(0.0, 2, STANDARD) == 50.0
    assert normalise(-4.0, 2, PROFILES[2]) == 0.0


def test_the_sweep_finds_the_best_threshold_over_the_corpus() -> None:
    scores = np.zeros(100)
    scores[50] = 0.8   # the window's start
    scores[20] = 0.6   # a false positive before it
    scores[70] = 0.95  # a false positive after it, far enough to cost the full A_FP
    other = Labels(100, ())
    other_scores = np.zeros(100)
    other_scores[40] = 0.7
    best = sweep([(scores, LABELS), (other_scores, other)], STANDARD)
    # thresholds: 0.95 -> -1 - 0.11 (miss + FP); 0.8 -> 1 - 0.11; 0.7 -> 1 - 0.22; 0.6 -> ...
    assert best.threshold == pytest.approx(0.8)
    assert best.raw == pytest.approx(1.0 + 0.11 * sigma(11 / 9))
    assert best.normalised == pytest.approx(normalise(best.raw, 1, STANDARD))
    # the sweep agrees with scoring each file at that threshold
    direct = sum(score_file(s >= best.threshold, lb, STANDARD)
                 for s, lb in [(scores, LABELS), (other_scores, other)])
    assert direct == pytest.approx(best.raw)


def test_the_sweep_matches_brute_force_on_random_corpora() -> None:
    rng = np.random.default_rng(0)
    corpus = []
    for _ in range(5):
        n = int(rng.integers(120, 300))
        start = int(rng.integers(40, n - 30))
        corpus.append((rng.random(n).round(2), Labels(n, ((start, start + 20),))))
    for profile in PROFILES:
        best = sweep(corpus, profile)
        thresholds = np.unique(np.concatenate([s for s, _ in corpus]))
        brute = max(sum(score_file(s >= t, lb, profile) for s, lb in corpus) for t in thresholds)
        assert best.raw == pytest.approx(max(brute, -sum(len(lb.windows) for _, lb in corpus)
                                             * profile.a_fn))


def test_windows_from_timestamps() -> None:
    ts = np.datetime64("2014-01-01T00:00") + np.arange(10) * np.timedelta64(5, "m")
    assert window_rows(ts, [("2014-01-01 00:10:00.000000", "2014-01-01 00:20:00.000000")]) \
        == ((2, 4),)
