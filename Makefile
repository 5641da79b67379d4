# The README's two commands are `make run` and `make test`; everything else is here for them.
# Installs come from the committed uv.lock (`uv sync --frozen`): the same versions everywhere.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# uv from PATH, else bootstrapped from PyPI with pip into build/uv (no system-wide install).
UV ?= $(or $(shell command -v uv 2>/dev/null),build/uv/bin/uv)
SYNC = UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --inexact --python $(BIN)/python
# Re-sync whenever the dependencies or the lock change (another engineer's new dependency included).
DEPS := pyproject.toml uv.lock

.PHONY: install run test lint tools migrate token bench bench-smoke clean

build/uv/bin/uv:
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv build/uv
	build/uv/bin/python -m pip install --quiet uv

# A dependency added to pyproject.toml without `uv lock` is locked here (CI instead fails on a stale lock).
uv.lock: pyproject.toml | $(UV)
	$(UV) lock $(if $(CI),--check,--quiet)
	@touch $@

$(BIN)/python: | $(UV)
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	$(UV) venv --quiet --seed --python $(PYTHON) $(VENV)

# Runtime dependencies only: what `make run` needs.
$(VENV)/.synced-run: $(DEPS) | $(BIN)/python
	$(SYNC) --quiet
	@touch $@

# Runtime + dev (tests, linters) + bench extras.
$(VENV)/.synced-dev: $(DEPS) | $(BIN)/python
	$(SYNC) --quiet --extra dev --extra bench
	@touch $@ $(VENV)/.synced-run

install: $(VENV)/.synced-dev

## Run the service on http://127.0.0.1:8000 (embedded SQLite unless a database URL is configured).
run: $(VENV)/.synced-run
	$(BIN)/uvicorn backend.main:app --host 127.0.0.1 --port 8000

## Lint, type-check and run the whole test suite with the coverage floor. Without a reachable
## PostgreSQL (and no TEST_DATABASE_URL) the suite starts an embedded one; missing PgBouncer,
## Node.js or Chromium are installed when run as root with apt, else those suites skip (CI: fail).
test: $(VENV)/.synced-dev tools lint
	$(BIN)/pytest --cov --cov-report=term --junitxml=build/junit.xml

## Install PgBouncer, Node.js/npm and Chromium when missing and this user can (root + apt-get).
tools:
	@bash .ci/install-tools

lint: $(VENV)/.synced-dev
	$(BIN)/ruff check backend tests bench
	$(BIN)/ruff format --check backend tests bench
	$(BIN)/mypy

migrate: $(VENV)/.synced-run
	$(BIN)/python -m backend migrate

token: $(VENV)/.synced-run
	@$(BIN)/python -m backend token $(or $(USER_ID),dev-user)

## Benchmark the service against the raw-driver limit app (needs wrk and a local PostgreSQL; < 12 min).
bench: $(VENV)/.synced-dev
	$(BIN)/python -m bench.run

## A few seconds per scenario: proves the benchmark still works (CI runs this).
bench-smoke: $(VENV)/.synced-dev
	$(BIN)/python -m bench.run --smoke

clean:
	rm -rf $(VENV) build .coverage .mypy_cache .ruff_cache .pytest_cache
