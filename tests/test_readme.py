"""The README stays true: its commands, settings and fleet dates match the code."""

from __future__ import annotations

import dataclasses
import json

from conftest import ROOT

from forecaster.config import Settings

README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_two_commands_and_ci_runs_the_same() -> None:
    first_block = README.split("```sh", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in first_block.strip().splitlines()] == [
        "make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_setting_is_documented() -> None:
    for field in dataclasses.fields(Settings):
        assert f"| `{field.name}`" in README, field.name


def test_the_fleet_table_matches_the_ground_truth() -> None:
    truth = json.loads((ROOT / "data" / "fleet" / "truth.json").read_text())
    for uid in ("code-assist:latency_p95_ms", "summarize:quality_score",
                "embed-batch:requests_per_s", "support-bot:negative_feedback_rate"):
        crossing = next(c for c in truth["crossings"] if c["unique_id"] == uid)
        assert crossing["first_crossing"][:10] in README, uid
    assert truth["incidents"][0]["start"][:10] in README


def test_the_first_example_comes_from_a_command_the_readme_shows() -> None:
    """`make demo` builds .demo/demo.duckdb; the first example reads it (the example's rows are
    checked against a real build in tests/test_cli.py)."""
    from forecaster.demo import DEMO_DB

    block = README.split("```\n$ ", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in ("$ " + block).splitlines()
                if line.startswith("$ ")]
    assert commands == ["$ forecaster demo", f"$ forecaster --db {DEMO_DB} interventions "
                        "--by-service"]
    makefile = (ROOT / "Makefile").read_text()
    assert f"DEMO_DB ?= {DEMO_DB}" in makefile and "demo --data data --serve" in makefile
