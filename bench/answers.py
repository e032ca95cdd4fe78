"""Answers before and after a refactor: dump the demo's published answers and the NAB backtest's
estimates, then compare two dumps. A change that claims "behaviour unchanged" shows it with this.

What is dumped (times and ids that differ between identical runs left out):
- ``demo.json``: the demo database's interventions, anomalies, forecasts, run_series,
  model_choices, series and estimate_scores, every row keyed by ``service:metric`` (series ids
  depend on ingest order), ``scored_at``/``chosen_at`` left out;
- ``demo_stdout.txt``: what the demo prints, its stage timings masked;
- ``nab.json``: every estimate of every method of bench/tti_backtest.py's ``nab`` set (24 h
  cut-offs, at most ``--cutoffs`` per series).

Usage:
    python bench/answers.py dump DIR [--cutoffs 6]     # about 2 minutes
    python bench/answers.py compare BEFORE_DIR AFTER_DIR

``compare`` prints per file ``identical``, ``within 1e-9`` or ``DIFFERENT`` and exits 1 on any
difference. To dump an older commit: ``git worktree add /tmp/old REV`` and run this script with
``PYTHONPATH=/tmp/old`` from ``/tmp/old``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TABLES = [("interventions", []), ("anomalies", []), ("forecasts", []), ("run_series", []),
          ("model_choices", ["chosen_at"]), ("series", []), ("estimate_scores", ["scored_at"])]


def _plain(value: Any) -> Any:
    return value if isinstance(value, int | float | bool | type(None)) else str(value)


def dump(out: Path, cutoffs: int) -> None:
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FORECASTER_")}
        done = subprocess.run([sys.executable, "-m", "forecaster", "demo", "--data",
                               str(ROOT / "data")], cwd=tmp, env=env, capture_output=True,
                              text=True, check=True)
        (out / "demo_stdout.txt").write_text(re.sub(r"\(scoring .*? s\)", "(timings)",
                                                    done.stdout))
        con = duckdb.connect(str(Path(tmp) / ".demo" / "demo.duckdb"), read_only=True)
        tables = {}
        for table, drop in TABLES:
            cols = [c[0] for c in con.execute(f"DESCRIBE {table}").fetchall()
                    if c[0] not in [*drop, "series_id"]]
            picked = ", ".join(f"t.{c}" for c in cols)
            rows = con.execute(f"SELECT s.service || ':' || s.metric AS uid, {picked} FROM "
                               f"{table} t JOIN series s USING (series_id) ORDER BY ALL").fetchall()
            tables[table] = {"cols": ["uid", *cols],
                             "rows": [[_plain(v) for v in row] for row in rows]}
        con.close()
    (out / "demo.json").write_text(json.dumps(tables, sort_keys=True, default=str))
    sys.path.insert(0, str(ROOT / "bench"))
    import tti_backtest

    from forecaster.config import Settings

    result, _ = tti_backtest.nab(timedelta(hours=24), cutoffs, Settings())
    estimates = sorted((dataclasses.asdict(e) for e in result.estimates),
                       key=lambda d: (d["method"], d["unique_id"], str(d["cutoff"])))
    (out / "nab.json").write_text(json.dumps(estimates, sort_keys=True, default=str))
    counts = ", ".join(f"{name} {len(table['rows'])}" for name, table in tables.items())
    print(f"{out}: demo {counts}; nab {len(estimates)} estimates")


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b)) or (
            abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b)))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return bool(a == b)


def compare(before: Path, after: Path) -> int:
    different = 0
    for name in ("demo.json", "nab.json", "demo_stdout.txt"):
        a, b = (before / name).read_text(), (after / name).read_text()
        same = a == b or (name.endswith(".json") and _close(json.loads(a), json.loads(b)))
        print(f"{name}: {'identical' if a == b else 'within 1e-9' if same else 'DIFFERENT'}")
        different += not same
    return 1 if different else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump")
    d.add_argument("out", type=Path)
    d.add_argument("--cutoffs", type=int, default=6)
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.command == "dump":
        sys.path.insert(0, str(ROOT))
        dump(args.out, args.cutoffs)
    else:
        raise SystemExit(compare(args.before, args.after))


if __name__ == "__main__":
    main()
