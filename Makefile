# The README's two commands are `make run` and `make test`; everything else is here for them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint migrate token bench bench-smoke clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $@

install: $(STAMP)

## Run the service on http://127.0.0.1:8000 (embedded SQLite unless a database URL is configured).
run: $(STAMP)
	$(BIN)/uvicorn backend.main:app --host 127.0.0.1 --port 8000

## Lint, type-check and run the whole test suite (real PostgreSQL required) with the coverage floor.
test: $(STAMP) lint
	$(BIN)/pytest --cov --cov-report=term --junitxml=build/junit.xml

lint: $(STAMP)
	$(BIN)/ruff check backend tests bench
	$(BIN)/ruff format --check backend tests bench
	$(BIN)/mypy

migrate: $(STAMP)
	$(BIN)/python -m backend migrate

token: $(STAMP)
	@$(BIN)/python -m backend token $(or $(USER_ID),dev-user)

## Benchmark the service against the raw-driver limit app (needs wrk and a local PostgreSQL; < 10 min).
bench: $(STAMP)
	$(BIN)/python -m bench.run

## A few seconds per scenario: proves the benchmark still works (CI runs this).
bench-smoke: $(STAMP)
	$(BIN)/python -m bench.run --smoke

clean:
	rm -rf $(VENV) build .coverage .mypy_cache .ruff_cache .pytest_cache
