# fivek: `make demo` runs the whole pipeline on the synthetic dataset, `make test` runs the tests.
# Both create the virtual environment (.venv) and install everything on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/demo.yaml

.DEFAULT_GOAL := help
.PHONY: help install demo test test-fast bench bench-gpu clean clean-outputs

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the kit and its dependencies

demo: $(STAMP) ## synthetic data + every notebook through papermill on configs/demo.yaml
	$(BIN)/fivek run --config $(CONFIG)

# -n auto: one pytest-xdist worker per core; loadgroup keeps the smoke run's tests on one worker
PYTEST := $(BIN)/python -m pytest -q -n auto --dist loadgroup

test: $(STAMP) ## the whole test suite (includes a papermill run of every notebook)
	$(PYTEST)

test-fast: $(STAMP) ## the tests without the slow notebook and training runs
	$(PYTEST) -m "not slow"

bench: $(STAMP) ## the benchmarks (progressive learning, prediction, input pipeline)
	$(BIN)/fivek bench progressive
	$(BIN)/fivek bench predict
	$(BIN)/fivek bench pipeline

bench-gpu: $(STAMP) ## on a GPU machine: precision, XLA, input pipeline, progressive at 384 px (~8 min)
	$(BIN)/fivek bench gpu

clean-outputs: ## delete generated data, models, reports and submissions
	rm -rf data/raw data/interim data/processed models/*/ reports/*/ submissions/*.csv submissions/*.yaml

clean: clean-outputs ## also delete the virtual environment
	rm -rf $(VENV)
