# Two commands set everything up: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/shipscope_test

.PHONY: run test lint bench clean

$(BIN)/shipscope: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test-extras: $(BIN)/shipscope
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/shipscope
	$(BIN)/shipscope demo --if-empty --db duckdb:///shipscope.duckdb
	$(BIN)/shipscope serve --db duckdb:///shipscope.duckdb --host 127.0.0.1 --port 8080

test: $(VENV)/.test-extras
	scripts/ensure-postgres.sh
	scripts/ensure-chromium.sh
	scripts/ensure-prometheus.sh
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	SHIPSCOPE_TEST_PG_URL=$(PG_URL) $(BIN)/pytest

lint: $(VENV)/.test-extras
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) test-artifacts .pytest_cache .mypy_cache .ruff_cache
