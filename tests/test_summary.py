from datetime import datetime, timedelta

import polars as pl

from forecaster.sources.files import ingest_points_frame
from forecaster.store import Store
from forecaster.summary import render_summary


def test_empty_store_says_how_to_start(store: Store) -> None:
    assert "No points stored yet" in render_summary(store.series_summary())


def test_summary_shows_last_value_and_change_against_a_week_before(store: Store,
                                                                    now: datetime) -> None:
    start = datetime(2026, 11, 1)
    # 9 days hourly, value = 100 x day number (1 to 9). The last point is 23:00 of day 9, so the
    # last 24 h average 900 and the 24 h a week before them, (day 1 23:00, day 2 23:00], 200.
    frame = pl.DataFrame({
        "ts": [start + timedelta(hours=h) for h in range(9 * 24)],
        "service": "svc", "metric": "latency_p95_ms",
        "value": [float(h // 24 + 1) * 100 for h in range(9 * 24)], "unit": "ms"})
    ingest_points_frame(store, frame, now)
    text = render_summary(store.series_summary())
    assert "svc: 1 series, 216 points, 2026-11-01 00:00 to 2026-11-09 23:00 UTC" in text
    line = next(x for x in text.splitlines() if "latency_p95_ms" in x)
    week_before = 200.0
    assert "900 ms" in line and f"{(900 / week_before - 1) * 100:+.1f}%" in line
    assert "100 ms" in line
