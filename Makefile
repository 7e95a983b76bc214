# RetailPulse — the two commands are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | sha1sum | cut -c1-12)
export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export RETAILPULSE_HOME := $(CURDIR)

.PHONY: install init run test airflow bench sandbox clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python requirements.txt pyproject.toml
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -r requirements.txt
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	$(BIN)/python -m pip check
	rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP)

init: install
	$(BIN)/retailpulse init

run: init
	$(BIN)/retailpulse demo

test: install
	@# Debian's chromium for the dashboard browser test: once per machine, only as root with apt-get,
	@# never fatal (without it that one test skips); RETAILPULSE_SKIP_BROWSER_INSTALL=1 opts out.
	@command -v chromium >/dev/null 2>&1 || [ -n "$$RETAILPULSE_SKIP_BROWSER_INSTALL" ] || [ "$$(id -u)" != 0 ] \
	  || ! command -v apt-get >/dev/null 2>&1 || { echo "installing chromium (apt-get, once) for the dashboard browser test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "warning: chromium could not be installed; the dashboard browser test will skip"; }
	$(BIN)/retailpulse init --quiet
	$(BIN)/python -m pytest $(PYTEST_ARGS)

airflow: init
	$(BIN)/retailpulse airflow

sandbox: install
	$(BIN)/retailpulse sandbox --world small

bench: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf .airflow warehouse/*.duckdb data dbt/target dbt/logs

# --- consumption: dashboard and scores API (read the published serving copy only) ----------
.PHONY: dashboard api

dashboard: install   ## Streamlit dashboard on 127.0.0.1:8501 (RETAILPULSE_DASHBOARD_HOST/PORT)
	$(BIN)/python -m dashboard

api: install         ## scores API on 127.0.0.1:8000 (RETAILPULSE_API_HOST/PORT; bearer token: RETAILPULSE_API_TOKEN or data/api_token)
	$(BIN)/python -m retailpulse.api
