# Every workflow is a make target. Run `make help` for the list.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
INSTALLED := $(VENV)/.installed
LOCAL_ROOT ?= .local
# Where the job specs read their data (/Volumes/main/diabetes/data/...), mapped by the local runner.
LOCAL_DATA := $(LOCAL_ROOT)/Volumes/main/diabetes/data
PARAMS ?=
TARGET ?= dev
RUN_FLAGS ?=
SERVE_PORT ?= 5001
# Where `make dist` and `make deploy` build the wheels.
DIST ?= dist
DEPLOY = $(BIN)/diabetes-mlops
# Test processes: each has its own Spark session, MLflow store and champion; a file's tests stay
# together (they share module fixtures).
TEST_WORKERS ?= 2
PYTEST = $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=15
# Spark from a deploy target's compute (Databricks Connect, in its own environment): SPARK_TARGET=staging.
SPARK_TARGET ?=
DBCONNECT_VENV ?= .venv-dbconnect
DBCONNECT_INSTALLED := $(DBCONNECT_VENV)/.installed
RUN_LOCAL = $(if $(SPARK_TARGET),$(DBCONNECT_VENV)/bin,$(BIN))/diabetes-mlops run-local \
	--local-root $(LOCAL_ROOT) $(foreach p,$(PARAMS),--param $(p)) \
	$(if $(SPARK_TARGET),--spark-target $(SPARK_TARGET))
export MLFLOW_DISABLE_TELEMETRY := true
export PYSPARK_PYTHON := $(abspath $(PY))
export SPARK_LOCAL_IP := 127.0.0.1

.PHONY: help install dbconnect-env test test-all test-connect lint fmt dist validate data local-data run-local-training \
	run-local-batch-scoring demo demo-drift mlflow-ui serve serve-check bench-local bench-serving deploy deploy-plan databricks-init databricks-upload-data \
	run-diabetes-model-training run-diabetes-batch-scoring integration-test bench-deploy \
	bench-scoring bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-26s %s\n", $$1, $$2}'

install: $(INSTALLED) ## venv with pinned deps and both packages editable

dbconnect-env: $(DBCONNECT_INSTALLED) ## .venv-dbconnect: Databricks Connect for run-local SPARK_TARGET=<target> (no pyspark)

$(DBCONNECT_INSTALLED): requirements-dbconnect.txt ml_source/pyproject.toml ml_ops/pyproject.toml
	$(PYTHON) -m venv $(DBCONNECT_VENV)
	$(DBCONNECT_VENV)/bin/pip install --quiet --upgrade pip
	$(DBCONNECT_VENV)/bin/pip install --quiet -r requirements-dbconnect.txt
	$(DBCONNECT_VENV)/bin/pip install --quiet -e ml_source -e ml_ops
	touch $@

$(INSTALLED): requirements.txt ml_source/pyproject.toml ml_ops/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet -e ml_source -e "ml_ops[local]"
	touch $@

test: $(INSTALLED) ## everyday tier, offline, ~2.5-3 min: every capability end to end once, sampled bad inputs (docs/testing.md)
	@echo "make test: the everyday tier; tests marked slow or network are left to make test-all"
	$(PYTEST) -m "not slow and not network"

test-all: $(INSTALLED) $(DBCONNECT_INSTALLED) ## every test (Databricks Connect's in .venv-dbconnect too), then the Spark tests again through Spark Connect; coverage >= 90% per package
	$(PYTEST) --hypothesis-profile=full --cov --cov-report=
	$(PY) -m coverage report --include='ml_source/*' --fail-under=90
	$(PY) -m coverage report --include='ml_ops/*' --fail-under=90
	$(MAKE) test-connect

test-connect: $(INSTALLED) ## the Spark tests through Spark Connect (as serverless runs the steps)
	DIABETES_MLOPS_TEST_SPARK=connect $(PYTEST) --hypothesis-profile=full -m "spark and not classic_spark_only"

lint: $(INSTALLED) ## ruff + black --check + the layer contract (lint-imports) + hadolint
	$(BIN)/ruff check .
	$(BIN)/black --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/hadolint .devcontainer/Dockerfile

fmt: $(INSTALLED) ## format with black, fix what ruff can
	$(BIN)/ruff check --fix .
	$(BIN)/black .

dist: $(INSTALLED) ## build the two wheels into dist/, versioned x.y.z+h<content hash> as deploy ships them
	$(BIN)/diabetes-mlops wheels --out $(DIST)

validate: $(INSTALLED) ## check job specs (JobSettings, widgets, parameter values per deploy.yml target)
	$(BIN)/diabetes-mlops validate --notebooks-dir orchestrator_notebooks job_specs/*.json

data: $(INSTALLED) ## regenerate ml_data/*.csv (byte-identical) from scikit-learn's diabetes data
	$(PY) -m diabetes.sample_data ml_data

local-data: $(LOCAL_DATA)/data_raw.csv $(LOCAL_DATA)/data_batch_input.csv ## copy ml_data to where the local jobs read it

$(LOCAL_DATA)/%.csv: ml_data/%.csv
	mkdir -p $(LOCAL_DATA)
	cp $< $@

run-local-training: $(INSTALLED) local-data $(if $(SPARK_TARGET),$(DBCONNECT_INSTALLED)) ## run job_specs/diabetes_model_training.json locally (PARAMS="k=v ...")
	$(RUN_LOCAL) job_specs/diabetes_model_training.json

run-local-batch-scoring: $(INSTALLED) local-data $(if $(SPARK_TARGET),$(DBCONNECT_INSTALLED)) ## run job_specs/diabetes_batch_scoring.json locally (PARAMS="k=v ...")
	$(RUN_LOCAL) job_specs/diabetes_batch_scoring.json

demo: run-local-training run-local-batch-scoring ## train, validate, promote, then batch-score; print where results are
	@$(PY) -c "import pandas as pd; p='$(LOCAL_DATA)/predictions/diabetes'; \
	  f=pd.read_parquet(p); print(f'\nScored {len(f)} rows into {p}:'); print(f.head().to_string())"
	@echo
	@echo "MLflow runs and the registry: sqlite store $(LOCAL_ROOT)/mlflow.db, artifacts $(LOCAL_ROOT)/mlartifacts"
	@echo "Browse them with: make mlflow-ui, then open $$($(DEPLOY) ui-url --local-root $(LOCAL_ROOT))"

demo-drift: $(INSTALLED) local-data ## drift loop: train, score the sample + 2 drifted batches, show the drift table and the retraining
	$(DEPLOY) demo-drift --local-root $(LOCAL_ROOT)

mlflow-ui: $(INSTALLED) ## serve the local MLflow store on http://127.0.0.1:5000 (prints the runs' page)
	@echo "The runs: $$($(DEPLOY) ui-url --local-root $(LOCAL_ROOT))"
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(abspath $(LOCAL_ROOT))/mlflow.db --host 127.0.0.1 --port 5000

serve: $(INSTALLED) ## serve the local champion with MLflow's scoring server on 127.0.0.1:5001 (SERVE_PORT=...)
	$(DEPLOY) serve --local-root $(LOCAL_ROOT) --port $(SERVE_PORT)

serve-check: $(INSTALLED) ## query `make serve` in both JSON formats: equal to batch scoring, bad requests 4xx
	$(DEPLOY) serve-check --local-root $(LOCAL_ROOT) --batch-output $(LOCAL_DATA)/predictions/diabetes

bench-local: $(INSTALLED) ## median wall time of 5 runs of each local job (warm store)
	$(PY) ml_ops/benchmarks/local_jobs.py --runs 5

bench-deploy: $(INSTALLED) ## deploy twice to a fake workspace: wall times and bytes uploaded
	$(PY) ml_ops/benchmarks/deploy_twice.py --runs 5

bench-scoring: $(INSTALLED) ## Spark scoring (native vs spark_udf vs pandas_udf vs pandas), the drift monitor's pass, and the whole batch job vs a bare scan; 1M, 10M and 100M rows
	$(PY) ml_ops/benchmarks/scoring.py --rows 1000000 10000000 --repeats 5

bench-serving: $(INSTALLED) ## MLflow's scoring server on loopback: p50/p99, requests/s, 1-100 rows, 1-32 clients
	$(PY) ml_ops/benchmarks/serving.py --clients 1 8 32 --rows 1 100 --workers 1 2

bench: bench-scoring bench-local bench-deploy bench-serving ## every benchmark; scoring results go to ml_ops/benchmarks/results/

# --- Databricks (TARGET=dev|staging|prod, see deploy.yml; auth: DATABRICKS_HOST/TOKEN or a profile)
deploy: $(INSTALLED) ## validate, build, upload, import notebooks, create/reset jobs in TARGET
	$(DEPLOY) deploy --target $(TARGET) --dist $(DIST)

deploy-plan: $(INSTALLED) ## print the resolved JobSettings and the upload list; change nothing
	$(DEPLOY) deploy --target $(TARGET) --dist $(DIST) --plan

databricks-init: $(INSTALLED) ## create what TARGET lacks: UC schemas + volumes, folders, experiment, secret scope, cluster, grants
	$(DEPLOY) databricks-init --target $(TARGET)

databricks-upload-data: $(INSTALLED) ## put ml_data/*.csv where TARGET's jobs read them; same file: skipped, other file: refused (OVERWRITE=1 replaces)
	$(DEPLOY) databricks-upload-data --target $(TARGET) $(if $(OVERWRITE),--overwrite)

run-diabetes-model-training: $(INSTALLED) ## run the deployed training job in TARGET and follow it
	$(DEPLOY) run --target $(TARGET) diabetes-model-training $(RUN_FLAGS) $(foreach p,$(PARAMS),--param $(p))

run-diabetes-batch-scoring: $(INSTALLED) ## run the deployed batch-scoring job in TARGET and follow it
	$(DEPLOY) run --target $(TARGET) diabetes-batch-scoring $(RUN_FLAGS) $(foreach p,$(PARAMS),--param $(p))

integration-test: deploy run-diabetes-model-training run-diabetes-batch-scoring ## deploy TARGET, run both jobs, fail unless both succeed

clean: ## remove local runs, builds and caches (keeps .venv)
	rm -rf $(LOCAL_ROOT) dist build ml_source/build ml_ops/build .pytest_cache .ruff_cache \
	  .import_linter_cache .grimp_cache .coverage htmlcov .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
	find . -path ./$(VENV) -prune -o -name '*.egg-info' -type d -exec rm -rf {} +
