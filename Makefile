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
# Where the UIs and the service listen: loopback only, one port each, so they run side by
# side (the Dagster UI keeps its default 3000, the scoring service takes 3001 beside it).
# Override on the command line, e.g. `make serve SERVE_PORT=4001`.
BIND_HOST ?= 127.0.0.1
DAGSTER_PORT ?= 3000
SERVE_PORT ?= 3001
FEAST_UI_PORT ?= 8888
MLFLOW_PORT ?= 5000

.PHONY: setup demo test test-e2e bench lint format dev dbt feast-ui mlflow-ui serve clean

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

# The end-to-end tests (marked `e2e`: the demo loop with the real Dagster daemon, the local
# production stack and its faults) start processes and take 7-10 minutes on 2 cores:
# `make test-e2e` runs them, apart from the suite.
test: setup
	$(BIN)/pytest -m "not e2e"

test-e2e: setup
	$(BIN)/pytest -m e2e

bench: setup
	$(BIN)/python -m benchmarks

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

dev: setup
	$(WITH_ENV) $(BIN)/dagster dev --host $(BIND_HOST) --port $(DAGSTER_PORT)

dbt: setup
	$(WITH_ENV) cd dbt_project && ../$(BIN)/dbt build

feast-ui: setup
	$(WITH_FEAST_ENV) cd features/repo && ../../$(BIN)/feast ui --host $(BIND_HOST) --port $(FEAST_UI_PORT)

mlflow-ui: setup
	$(WITH_ENV) $(BIN)/mlflow ui --backend-store-uri "$$FRAUDOPS_MLFLOW_TRACKING_URI" --host $(BIND_HOST) --port $(MLFLOW_PORT)

# The instance's own BentoML home (its Prometheus folder), as `fraudops stack up` gives it.
serve: setup
	$(WITH_ENV) BENTOML_HOME="$${BENTOML_HOME:-$(FRAUDOPS_HOME)/serving/bentoml/port-$(SERVE_PORT)}" \
	  $(BIN)/bentoml serve serving.service:FraudScoring --host $(BIND_HOST) --port $(SERVE_PORT)

clean:
	rm -rf var

# The local production stack as processes (docs/operations.md, "The local stack"): the
# production profile in its own runtime folder. The service's API keys come only from the
# environment: export FRAUDOPS_SERVING_API_KEYS='["..."]' first.
.PHONY: prod-up prod-down prod-status prod-demo
PROD_HOME ?= $(CURDIR)/var/production
WITH_PROD = FRAUDOPS_PROFILE=production FRAUDOPS_HOME=$(PROD_HOME)

# Not `setup`: that initializes the embedded profile's runtime folder; the stack writes its own.
prod-up: $(STAMP)
	$(WITH_PROD) $(BIN)/fraudops stack up

prod-down:
	$(WITH_PROD) $(BIN)/fraudops stack down

prod-status:
	$(WITH_PROD) $(BIN)/fraudops stack status

# A second run over the same stack needs `make prod-demo DEMO_ARGS=--force`.
prod-demo:
	$(WITH_PROD) $(BIN)/fraudops stack demo $(DEMO_ARGS)
