# fraudops: one Makefile for set-up, the demo, tests, benchmarks and lint.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export FRAUDOPS_HOME ?= $(CURDIR)/var
export DAGSTER_HOME ?= $(FRAUDOPS_HOME)/dagster
export DAGSTER_DISABLE_TELEMETRY := true
export BENTOML_DO_NOT_TRACK := true
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export DO_NOT_TRACK := 1
export MLFLOW_ENABLE_TELEMETRY := false
# The tools of the virtualenv (dbt, feast, dagster, bentoml, mlflow) for every target.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup demo test bench lint format dev dbt feast-ui mlflow-ui serve clean

# Re-install only when the dependency list changed.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)
	@$(BIN)/fraudops init

demo: setup
	$(BIN)/fraudops demo

test: setup
	$(BIN)/pytest

bench: setup
	$(BIN)/python -m benchmarks

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

dev: setup
	$(BIN)/dagster dev

dbt: setup
	cd dbt_project && ../$(BIN)/dbt build

feast-ui: setup
	eval "$$($(BIN)/python -m ml.feature_store env)" && cd feature_repo && ../$(BIN)/feast ui --port 8888

mlflow-ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(FRAUDOPS_HOME)/mlflow/mlflow.db --host 127.0.0.1 --port 5000

serve: setup
	$(BIN)/bentoml serve serving.service:FraudScoring --host 127.0.0.1 --port 3000

clean:
	rm -rf var
