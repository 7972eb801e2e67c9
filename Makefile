# fraudops: one Makefile for set-up, the demo, tests, benchmarks and lint.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export FRAUDOPS_HOME ?= $(CURDIR)/var
# The tools of the virtualenv (dbt, feast, dagster, bentoml, mlflow) for every target.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# The environment of the settings (telemetry opt-outs, DAGSTER_HOME, FRAUDOPS_*) comes from
# one place, fraudops.environ, for the targets that start a tool. The assignment, unlike a bare
# eval "$(...)", fails the recipe when the command fails (e.g. an invalid FRAUDOPS_* value).
WITH_ENV = exports="$$($(BIN)/fraudops env)" && eval "$$exports" &&
# The Feast CLI also needs feature_store.yaml's variables.
WITH_FEAST_ENV = $(WITH_ENV) feast_exports="$$($(BIN)/python -m features.store env)" && eval "$$feast_exports" &&

.PHONY: setup demo test bench lint format dev dbt feast-ui mlflow-ui serve clean

# Re-install only when the dependency list changed.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)
	@$(BIN)/fraudops init

# A second run over existing data needs `make demo DEMO_ARGS=--force` (or `make clean` first).
demo: setup
	$(BIN)/fraudops demo $(DEMO_ARGS)

test: setup
	$(BIN)/pytest

bench: setup
	$(BIN)/python -m benchmarks

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The Dagster UI keeps its default port, 3000; the scoring service listens on 3001 beside it.
dev: setup
	$(WITH_ENV) $(BIN)/dagster dev --host 127.0.0.1 --port 3000

dbt: setup
	$(WITH_ENV) cd dbt_project && ../$(BIN)/dbt build

feast-ui: setup
	$(WITH_FEAST_ENV) cd features/repo && ../../$(BIN)/feast ui --host 127.0.0.1 --port 8888

mlflow-ui: setup
	$(WITH_ENV) $(BIN)/mlflow ui --backend-store-uri "$$FRAUDOPS_MLFLOW_TRACKING_URI" --host 127.0.0.1 --port 5000

serve: setup
	$(WITH_ENV) $(BIN)/bentoml serve serving.service:FraudScoring --host 127.0.0.1 --port 3001

clean:
	rm -rf var
