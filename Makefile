# Two entry points: `make demo` and `make test`. Each creates .venv when it is missing or older
# than pyproject.toml or requirements.lock, installs the exact versions of requirements.lock
# into it (so a fresh machine runs what was tested), then the project itself, and runs.
# pyproject.toml keeps the version ranges for library users; `make lock` re-pins them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_DB ?= .demo/demo.duckdb

.PHONY: demo test lint bench lock clean

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "forecaster needs Python 3.11 or newer; found " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/forecaster --db $(DEMO_DB) demo --data data --serve

# Code health first (seconds), then the suite.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

# Re-pin every dependency (and theirs) to the newest versions pyproject.toml allows, for any
# platform and Python from 3.11; commit the result with the change that needed it.
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra test --universal --python-version 3.11 \
		--quiet -o requirements.lock

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
