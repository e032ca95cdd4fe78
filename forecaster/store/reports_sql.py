"""SQL of the weekly reports (forecaster.store.reports); values are always parameters."""

SAVE_REPORT = """
INSERT OR REPLACE INTO reports (week, week_start, run_id, as_of, made_at, html, figures)
VALUES (?, ?, ?, ?, ?, ?, ?)"""
REPORTS = """
SELECT week, week_start, run_id, as_of, made_at, octet_length(encode(html)) AS html_bytes
FROM reports ORDER BY week_start DESC LIMIT ?"""
REPORT = "SELECT week, run_id, as_of, made_at, html, figures FROM reports WHERE week = ?"
LATEST_REPORT = """
SELECT week, run_id, as_of, made_at, html, figures FROM reports ORDER BY week_start DESC LIMIT 1"""
