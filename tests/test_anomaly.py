"""The anomaly detector: PyOD contract, no look-ahead, scores in [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster.engine.anomaly import (
    FEATURES,
    AnomalySettings,
    ScoreCalibration,
    features,
    make_detector,
    onsets,
    score_series,
)

SETTINGS = AnomalySettings(window=100, long_window=400, min_train=100, refit_every=100,
                           max_train=1000)


def seasonal(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 10 + np.sin(2 * np.pi * t / 96) + rng.normal(0, 0.2, n)


@pytest.mark.parametrize("name", ["ecod", "hbos", "iforest", "knn"])
def test_detectors_keep_the_pyod_contract(name: str) -> None:
    x = np.random.default_rng(1).normal(size=(300, 3))
    detector = make_detector(name)
    assert detector.fit(x) is detector
    assert detector.decision_scores_.shape == (300,)
    assert hasattr(detector, "threshold_") and detector.labels_.shape == (300,)
    far = detector.decision_function(np.array([[8.0, 8.0, 8.0]]))
    assert far[0] > np.quantile(detector.decision_scores_, 0.99)  # higher is more abnormal
    with pytest.raises(ValueError, match="unknown detector"):
        make_detector("magic")


def test_appending_future_rows_does_not_change_past_scores() -> None:
    values = seasonal(1500)
    past = score_series(values[:1000], SETTINGS)
    future = np.concatenate([values[:1000], values[1000:] + 50.0])  # a wild future
    both = score_series(future, SETTINGS)
    assert np.array_equal(past.calibrated, both.calibrated[:1000])
    assert np.array_equal(past.onset, both.onset[:1000])
    x_past = features(values[:1000], 100, 6, 400)
    x_both = features(future, 100, 6, 400)
    assert np.array_equal(np.isnan(x_past), np.isnan(x_both[:1000]))
    assert np.allclose(x_past[~np.isnan(x_past)], x_both[:1000][~np.isnan(x_past)])


def test_scores_are_in_the_unit_interval_and_a_spike_stands_out() -> None:
    values = seasonal(1200)
    values[900] += 6.0
    scores = score_series(values, SETTINGS)
    for array in (scores.calibrated, scores.onset):
        assert np.all((array >= 0.0) & (array <= 1.0))
    assert int(np.argmax(scores.onset)) == 900
    assert scores.features.shape[1] == len(SETTINGS.use.split(","))
    assert set(SETTINGS.use.split(",")) <= set(FEATURES)


def test_learning_period_is_not_scored() -> None:
    scores = score_series(seasonal(1000), SETTINGS, learn_until=700)
    assert np.all(scores.calibrated[:700] == 0.0) and scores.calibrated[700:].any()


def test_calibration_is_uniform_below_the_tail_and_ranks_beyond_it() -> None:
    train = np.arange(1.0, 1001.0)
    calibrate = ScoreCalibration.fit(train)
    assert calibrate(np.array([500.0]))[0] == pytest.approx(0.5, abs=0.002)
    beyond = calibrate(np.array([1000.0, 5000.0, 1e9]))
    assert np.all(np.diff(beyond) > 0) and np.all(beyond < 1.0) and beyond[0] >= 0.9


def test_a_lasting_anomaly_is_reported_at_its_onset() -> None:
    calibrated = np.array([0.2, 0.3, 0.95, 0.96, 0.94, 0.5, 0.2, 0.97])
    # regrow 1: any new maximum of the last 3 rows is reported
    assert onsets(calibrated, start=0, settle=3, regrow=1.0).tolist() == [
        0.0, 0.3, 0.95, 0.96, 0.0, 0.0, 0.0, 0.97]
    # regrow 1.3: 0.96 (odds 25) is the 0.95 (odds 20) anomaly creeping up, not a new one;
    # 0.97 comes 5 rows after the last report, beyond ``settle``
    assert onsets(calibrated, start=0, settle=3, regrow=1.3).tolist() == [
        0.0, 0.3, 0.95, 0.0, 0.0, 0.0, 0.0, 0.97]
    # a much worse score within ``settle`` is reported again: odds 20 -> 100
    assert onsets(np.array([0.1, 0.95, 0.99]), start=0, settle=3, regrow=1.3).tolist() == [
        0.0, 0.95, 0.99]


def test_streaming_ecod_scores_a_row_as_pyod_scores_it_alone() -> None:
    from pyod.models.ecod import ECOD

    rng = np.random.default_rng(4)
    train, rows = rng.gamma(2.0, size=(500, 3)), rng.gamma(2.0, size=(20, 3))
    ours = make_detector("ecod").fit(train).decision_function(rows)
    theirs = ECOD().fit(train)
    one_by_one = np.array([theirs.decision_function(rows[i:i + 1])[0] for i in range(20)])
    # equal up to the skewness sign, which PyOD takes over training + row (the same here)
    assert ours == pytest.approx(one_by_one, rel=1e-9)
    # and, unlike PyOD's block scoring, a row's score ignores the other rows scored with it
    assert make_detector("ecod").fit(train).decision_function(rows[:5]) == pytest.approx(ours[:5])


def test_the_ecod_tail_keeps_ranking_beyond_the_training_range() -> None:
    train = np.random.default_rng(5).normal(size=(1000, 2))
    plain, tailed = make_detector("ecod"), make_detector("ecod", tail=20)
    rows = np.array([[5.0, 0.0], [50.0, 0.0], [0.0, 0.0]])
    p, t = plain.fit(train).decision_function(rows), tailed.fit(train).decision_function(rows)
    assert p[0] == pytest.approx(p[1])  # plain ECOD: both are simply "beyond every value"
    assert t[1] > t[0] > p[0]  # the tail ranks them by distance
    assert t[2] == pytest.approx(p[2])  # inside the range nothing changes
    # the training scores are computed the same way as new rows'
    assert tailed.decision_scores_ == pytest.approx(tailed.decision_function(train))


def test_extremeness_matches_a_direct_count_over_earlier_values() -> None:
    from forecaster.engine.anomaly import _extremeness

    rng = np.random.default_rng(6)
    for v in (rng.normal(size=700), rng.integers(0, 4, 600).astype(float), np.array([3.0])):
        expected = np.zeros(v.size)
        for i in range(1, v.size):
            below, above = (v[:i] < v[i]).sum(), (v[:i] > v[i]).sum()
            expected[i] = -np.log10((min(below, above) + 1) / (i + 1))
        assert _extremeness(v, block=64) == pytest.approx(expected)
