# The greenery platform: `make up` to run it, `make test` to test it. `make help` lists everything.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DBT_DIR := dbt/greenery
# Plain dbt runs against the local warehouse: libpq variables come from .local/warehouse.env.
WAREHOUSE_ENV := .local/warehouse.env
WITH_WAREHOUSE = set -a && source $(WAREHOUSE_ENV) && set +a &&

SCALE ?= 1
DAYS ?=
SEED ?=
CSV ?=
N ?= 3
OUT ?=
ARGS ?=
FROM ?=
TO ?=
# make up EXECUTOR=celery: CeleryExecutor with a Redis broker, two workers and the dbt docs in an object store.
EXECUTOR ?=

.PHONY: help up down status clean warehouse load deliver profile dbt manifest airflow backfill test test-e2e lint format bench venv venv-dev browser redis system-packages chart-libs lock

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# --- environment -------------------------------------------------------------------------------------------
# Each environment installs from its lock (every package pinned with hashes, `make lock` writes them from the
# requirement files) with uv, in one pass and with no resolver at install time. pip stays in .venv (pip check).
UV_VERSION := 0.13.8
UV := $(VENV)/bin/uv
UV_INSTALL = $(UV) pip install --quiet --python $(PY) --require-hashes

$(VENV)/.uv:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (found " + sys.version.split()[0] + ").")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-deps uv==$(UV_VERSION)
	@touch $@

$(VENV)/.runtime: $(VENV)/.uv requirements.lock
	$(UV_INSTALL) -r requirements.lock
	@touch $@

$(VENV)/.local-platform: $(VENV)/.runtime requirements-local.lock
	$(UV_INSTALL) -r requirements-local.lock
	@touch $@

$(VENV)/.dev: $(VENV)/.local-platform requirements-dev.lock
	$(UV_INSTALL) -r requirements-dev.lock
	@touch $@

lock: $(VENV)/.uv ## Write the lock files from requirements*.txt [UPGRADE=package to move one package]
	$(PY) -m include.local_platform.locks $(if $(UPGRADE),--upgrade-package "$(UPGRADE)")

venv: $(VENV)/.runtime ## Create or update the Python environment (.venv)

venv-dev: $(VENV)/.dev ## Create or update .venv with the test and lint tools

# Debian packages the tests and `make up EXECUTOR=celery` need (each installs a command of its own name), with one
# `apt-get update` for all that are missing (as root, or through sudo).
APT_INSTALL = missing=""; for package in $(1); do command -v $$package >/dev/null || missing="$$missing $$package"; done; \
	if [ -n "$$missing" ]; then echo "Installing Debian's$$missing ..."; \
		if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
		$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

browser: ## Install Debian's chromium for the browser tests (needs root or sudo)
	@$(call APT_INSTALL,chromium)

# The dbt health page draws its charts with Vega-Lite, served by the plugin from node_modules (the page needs no
# internet): npm ci installs exactly what package-lock.json pins, checked against its hashes, and runs no package script.
CHART_LIBS := node_modules/.package-lock.json

$(CHART_LIBS): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed for the dbt health page's charts: install Node.js 20 or newer with npm (sudo apt-get install nodejs npm)." >&2; exit 1; }
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

chart-libs: $(CHART_LIBS) ## Install the dbt health page's chart libraries from package-lock.json (npm ci)

redis: ## Install Debian's redis-server, the broker of make up EXECUTOR=celery (needs root or sudo)
	@$(call APT_INSTALL,redis-server)

system-packages: ## chromium and redis-server, both with one apt-get update (what make test needs)
	@$(call APT_INSTALL,chromium redis-server)

# --- the local platform ------------------------------------------------------------------------------------
warehouse: $(VENV)/.runtime ## Start the local PostgreSQL warehouse (idempotent)
	@$(PY) -m include.local_platform.warehouse start

# The DAGs' manifest lives in target/airflow/, where plain dbt never writes; it is written beside and renamed into
# place, so a DAG parse never reads a half-written one.
manifest: $(VENV)/.runtime ## Parse the dbt project into target/airflow/manifest.json (the DAGs render from it)
	@cd $(DBT_DIR) && ../../$(VENV)/bin/dbt parse --quiet --profiles-dir . --project-dir . --target-path target/airflow/parse \
		&& mv target/airflow/parse/manifest.json target/airflow/manifest.json \
		&& echo "dbt manifest: $(DBT_DIR)/target/airflow/manifest.json"

load: warehouse ## Load raw data: SCALE=N [DAYS=D] [SEED=S], or CSV=DIR for course-format CSV files
	@$(WITH_WAREHOUSE) $(PY) -m include.greenery_data load \
		$(if $(CSV),--csv "$(CSV)",--scale "$(SCALE)" $(if $(DAYS),--days "$(DAYS)") $(if $(SEED),--seed "$(SEED)"))

deliver: warehouse ## Ship preparing orders (the course's snapshot exercise): [N=3]
	@$(WITH_WAREHOUSE) $(PY) -m include.greenery_data deliver -n "$(N)"

profile: warehouse ## Profile the raw tables (keys, ranges, dependencies, time order) as Markdown [OUT=file]
	@$(WITH_WAREHOUSE) $(PY) -m include.greenery_data profile $(if $(OUT),--out "$(OUT)")

dbt: warehouse ## Run dbt against the local warehouse: make dbt ARGS="build"
	@$(WITH_WAREHOUSE) cd $(DBT_DIR) && ../../$(VENV)/bin/dbt $(ARGS) --profiles-dir . --project-dir .

up: warehouse manifest chart-libs $(VENV)/.local-platform $(if $(filter celery,$(EXECUTOR)),redis) ## Start the warehouse (with demo data) and Airflow at http://127.0.0.1:8080 [EXECUTOR=celery]
	@$(WITH_WAREHOUSE) $(PY) -m include.greenery_data load --scale 1 --if-empty
	@$(if $(EXECUTOR),GREENERY_EXECUTOR=$(EXECUTOR)) $(PY) -m include.local_platform.local_airflow up

airflow: ## Run the airflow CLI against the local instance: make airflow ARGS="dags list"
	@test -f .local/airflow.env || { echo "Airflow is not set up: run make up first." >&2; exit 1; }
	@set -a && source .local/airflow.env && set +a && $(PY) -m airflow $(ARGS)

backfill: ## Reprocess the UTC days FROM=YYYY-MM-DD to TO=YYYY-MM-DD (both included), one run at a time [DRY_RUN=1]
	@test -f .local/airflow.env || { echo "Airflow is not set up: run make up first." >&2; exit 1; }
	@set -a && source .local/airflow.env && set +a && $(PY) -m include.dbt_tasks.backfill \
		--from "$(FROM)" --to "$(TO)" $(if $(DRY_RUN),--dry-run)

down: ## Stop Airflow and the warehouse (idempotent)
	@if [ -x $(PY) ]; then $(PY) -m include.local_platform.local_airflow down && $(PY) -m include.local_platform.warehouse stop; \
	else echo "Nothing to stop."; fi

status: ## Is the warehouse running, and each Airflow component (RUNNING, BACKOFF, FATAL, with its pid)?
	@if [ -x $(PY) ]; then $(PY) -m include.local_platform.warehouse status; $(PY) -m include.local_platform.local_airflow status; \
	else echo "Nothing is set up: run make up."; fi

clean: down ## Stop everything and delete the local state (.local/, and the warehouse's files wherever they are)
	@if [ -x $(PY) ]; then $(PY) -m include.local_platform.warehouse destroy; fi
	rm -rf .local $(DBT_DIR)/target $(DBT_DIR)/logs node_modules

# --- quality -----------------------------------------------------------------------------------------------
test: $(VENV)/.dev system-packages manifest chart-libs ## Run the test suite (starts its own throwaway PostgreSQL; chromium for the UI test, redis for Celery)
	$(PY) -m pytest $(ARGS)

test-e2e: $(VENV)/.dev system-packages manifest chart-libs ## Only the end-to-end tests: DAG runs, the make-up platform, the UI in chromium
	$(PY) -m pytest tests/e2e $(ARGS)

lint: $(VENV)/.dev ## ruff and sqlfluff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/sqlfluff lint $(DBT_DIR)

format: $(VENV)/.dev ## Format Python and fix SQL style
	$(VENV)/bin/ruff format .
	$(VENV)/bin/sqlfluff fix $(DBT_DIR)

bench: $(VENV)/.dev manifest ## Run the benchmarks (QUICK=1 for the short version)
	$(PY) -m bench.run $(if $(QUICK),--quick)
