"""requirements.lock pins what `make demo` and `make test` install: it must keep up with the ranges
in pyproject.toml, or a fresh machine would run something other than what the ranges promise."""

from __future__ import annotations

import tomllib

from conftest import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version


def lock_problems(lock_text: str, pyproject_text: str) -> list[str]:
    """What is wrong with a lock file against pyproject.toml's dependencies (runtime and test)."""
    problems: list[str] = []
    pins: dict[str, list[Version]] = {}
    for line in lock_text.splitlines():
        if not line.strip() or line.startswith((" ", "#", "-")):
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator != "==":
            problems.append(f"{line!r} is not an exact pin")
            continue
        pins.setdefault(canonicalize_name(req.name), []).append(Version(specs[0].version))
    project = tomllib.loads(pyproject_text)["project"]
    for text in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req.name} is not pinned")
        for version in pins.get(name, []):
            if not req.specifier.contains(version, prereleases=True):
                problems.append(f"{req.name}=={version} is outside {req.specifier}")
    return problems


def test_every_dependency_is_pinned_inside_its_range() -> None:
    problems = lock_problems((ROOT / "requirements.lock").read_text(),
                             (ROOT / "pyproject.toml").read_text())
    assert not problems, f"requirements.lock is out of date (run `make lock`): {problems}"


def test_the_check_finds_a_stale_or_missing_pin() -> None:
    pyproject = ('[project]\ndependencies = ["duckdb>=2.0,<3", "polars>=2.1"]\n'
                 '[project.optional-dependencies]\ntest = ["pytest>=8"]\n')
    good = "duckdb==2.0.1\n    # via forecaster\npolars==2.1.0\npytest==9.0.0\n"
    assert lock_problems(good, pyproject) == []
    stale = good.replace("duckdb==2.0.1", "duckdb==1.4.0")
    assert lock_problems(stale, pyproject) == ["duckdb==1.4.0 is outside <3,>=2.0"]
    assert lock_problems(good.replace("pytest==9.0.0\n", ""), pyproject) == \
        ["pytest is not pinned"]
    assert lock_problems(good + "httpx>=0.27\n", pyproject) == ["'httpx>=0.27' is not an exact pin"]
