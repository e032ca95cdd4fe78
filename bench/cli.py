"""Start-up cost of the command line: time to first output of ``forecaster --help`` and of
``forecaster interventions`` on the demo database, against ``python -c pass`` in the same run.

Each command runs ``--repeat`` times in a fresh interpreter, in turn (so that load on the machine
hits them alike); the time to first output is when the first byte reaches our end of the pipe
(for ``python -c pass``, which prints nothing, when it exits). Medians and ratios to the bare
interpreter are reported. The demo database is a copy of ``.demo/demo.duckdb`` when one exists and
no process holds it, else it is built into a temporary folder (about a minute).

Usage:
    python bench/cli.py [--repeat 7] [--db DEMO_DB]

The last line printed is one JSON object. Aim: read commands under 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_DB = ROOT / ".demo" / "demo.duckdb"


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("FORECASTER_")}


def first_output(argv: list[str]) -> tuple[float, float, float, int]:
    """Seconds to the first byte of output (or to exit, for a silent command), to exit, the
    CPU seconds the process used (user + system: unlike wall time, barely changed by other load
    on the machine), and the exit status."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT,
                            env=clean_env())
    assert proc.stdout is not None
    first = proc.stdout.read(1)
    first_s = time.perf_counter() - started
    proc.stdout.read()
    proc.stdout.close()
    _, wait_status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(wait_status)
    done_s = time.perf_counter() - started
    return (first_s if first else done_s), done_s, usage.ru_utime + usage.ru_stime, \
        proc.returncode


def demo_copy(folder: Path, given: Path | None) -> Path:
    """A demo database no other process holds, for the read command to open."""
    target = folder / "demo.duckdb"
    source = given or DEMO_DB
    owner = source.with_name(source.name + ".owner")
    if source.exists() and not owner.exists():
        shutil.copyfile(source, target)
        return target
    print(f"building the demo database in {folder} ...", flush=True)
    subprocess.run([sys.executable, "-m", "forecaster", "--db", str(target), "demo", "--data",
                    str(ROOT / "data")], check=True, cwd=ROOT, env=clean_env(),
                   stdout=subprocess.DEVNULL)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--db", type=Path, help="demo database to read (default: a copy of "
                        ".demo/demo.duckdb, or a fresh build)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = demo_copy(Path(tmp), args.db)
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "forecaster --help": [sys.executable, "-m", "forecaster", "--help"],
            "forecaster interventions": [sys.executable, "-m", "forecaster", "--db", str(db),
                                         "interventions"],
        }
        first: dict[str, list[float]] = {name: [] for name in commands}
        done: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, argv in commands.items():
                first_s, done_s, cpu_s, status = first_output(argv)
                assert status == 0, f"{name} exited {status}"
                first[name].append(first_s)
                done[name].append(done_s)
                cpu[name].append(cpu_s)
    base = statistics.median(first["python -c pass"])
    result: dict[str, object] = {"repeat": args.repeat,
                                 "load_average_1m": round(os.getloadavg()[0], 2),
                                 "cores": os.cpu_count()}
    for name in commands:
        median_first = statistics.median(first[name])
        median_cpu = statistics.median(cpu[name])
        print(f"{name:<26} first output {median_first:6.3f} s  exit "
              f"{statistics.median(done[name]):6.3f} s  cpu {median_cpu:6.3f} s  "
              f"({median_first / base:5.1f}x python)")
        key = name.replace("forecaster ", "").replace("python -c pass", "python").replace(
            "--", "")
        result[f"{key}_first_output_s"] = round(median_first, 3)
        result[f"{key}_exit_s"] = round(statistics.median(done[name]), 3)
        result[f"{key}_cpu_s"] = round(median_cpu, 3)
        result[f"{key}_ratio_to_python"] = round(median_first / base, 1)
    result["read_under_1s"] = statistics.median(first["forecaster interventions"]) < 1.0
    print(json.dumps(result))


if __name__ == "__main__":
    main()
