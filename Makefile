# Faultline: `make run` starts everything, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast lint format bench bench-smoke soak clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	@touch $(STAMP)

run: install
	$(BIN)/faultline up

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not e2e and not faults and not node"

lint: install
	$(BIN)/ruff format --check shared services tests
	$(BIN)/ruff check shared services tests
	$(BIN)/mypy shared services

format: install
	$(BIN)/ruff format shared services tests
	$(BIN)/ruff check --fix shared services tests

bench: install
	$(BIN)/python -m tests.bench
	$(BIN)/python -m tests.bench.shards
	$(BIN)/python -m tests.bench.hooks

bench-smoke: install
	$(BIN)/python -m tests.bench --smoke

clean:
	rm -rf $(VENV) .faultline .pytest_cache .mypy_cache .ruff_cache

soak: install
	$(BIN)/python -m tests.soak --seconds 60
