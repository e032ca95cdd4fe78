# %% [markdown]
# # Explore the sample fleet
#
# A notebook in the percent format (Jupyter opens it with jupytext;
# `python notebooks/explore_fleet.py` runs it as a script). It uses only the public Python
# API: open a store, add points from a frame, refresh, and read history, answers and forecasts
# as polars frames.

# %%
import json
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import polars as pl

import forecaster

ROOT = Path(__file__).resolve().parent.parent if "__file__" in globals() else Path.cwd().parent
DATA = ROOT / "data"
truth = json.loads((DATA / "fleet" / "truth.json").read_text())
as_of = datetime.fromisoformat(truth["end"])

# %% [markdown]
# Load the fleet from its Parquet file through a polars frame, as you would load your own.

# %%
workdir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
store = forecaster.open_store(workdir / "notebook.duckdb")
frame = pl.read_parquet(DATA / "fleet" / "points.parquet")
report = forecaster.ingest_points_frame(store, frame, now=as_of)
print(report.summary())
for event in truth["events"]:
    store.add_event(service=event["service"], ts=datetime.fromisoformat(event["ts"]),
                    kind=event["kind"], now=as_of)

# %% [markdown]
# History of one series, daily means.

# %%
history = store.history(service="code-assist", metric="latency_p95_ms")
daily = history.group_by(pl.col("ds").dt.date().alias("day")).agg(pl.col("y").mean()).sort("day")
print(daily.tail(7))

# %% [markdown]
# Refresh once, as of the end of the data, and read the answers, most urgent first.

# %%
result = forecaster.refresh(store, now=as_of, policies=DATA / "policies.toml")
print(f"run {result.run_id}: {result.status}, {result.series} series, {result.failed} failed")
answers = store.interventions()
print(answers.filter(pl.col("decision") != "ok")
      .select("unique_id", "decision", "p_breach", "eta_p10", "eta_p50", "eta_p90", "act_by"))

# %% [markdown]
# The forecast behind one answer, with its quantiles, next to the truth the generator kept.

# %%
uid = "code-assist:latency_p95_ms"
fc = store.forecasts(uid)
print(fc.select("ds", "q10", "q50", "q90").head(5))
[crossing] = [c for c in truth["crossings"] if c["unique_id"] == uid]
row = answers.filter(pl.col("unique_id") == uid).row(0, named=True)
print(f"true first crossing {crossing['first_crossing']}; "
      f"estimated {row['eta_p50']} ({row['eta_p10']} to {row['eta_p90']})")
print(row["reason"])
store.close()
