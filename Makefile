# fivek: `make demo` runs the whole pipeline on the synthetic dataset, `make test` runs the tests.
# Both create the virtual environment (.venv) and install everything on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/demo.yaml
# the support matrix's second row: what Colab ships, and the kit's lower bounds of the rest, on Colab's
# Python (3.13) where this machine has it (on PATH, or pyenv's), else on $(PYTHON), which test-compat says
COMPAT_PYTHON ?= $(shell for p in python3.13 $$HOME/.pyenv/versions/3.13*/bin/python3.13; do \
                   $$p -c 'import sys; print(sys.executable)' 2>/dev/null && break; done)
COMPAT_PY := $(or $(COMPAT_PYTHON),$(PYTHON))
COMPAT_VENV ?= .venv-compat
COMPAT_BIN := $(COMPAT_VENV)/bin
# the stamp names the interpreter, so a .venv-compat made by another Python is made again
COMPAT_STAMP := $(COMPAT_VENV)/.installed-$(notdir $(COMPAT_PY))
CONSTRAINTS := constraints/colab.txt constraints/lower-bounds.txt
# pip shows every warning of the build backend; setuptools' "Editable installation" one only says that
# a folder named fivek_utils in the working directory would be imported first, which here is the
# checkout itself. Only that warning is silenced: errors and every other warning still print.
EDITABLE := PYTHONWARNINGS="ignore:Editable installation"

.DEFAULT_GOAL := help
.PHONY: help install demo test test-fast test-compat test-rehearse bench bench-gpu clean clean-outputs

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-14s %s\n", $$1, $$2}'

# requirements-nodeps.txt: wheels the kit reads a model file from, whose metadata pins versions it does not use
$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(EDITABLE) $(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the kit and its dependencies

$(COMPAT_STAMP): requirements.txt requirements-nodeps.txt pyproject.toml $(CONSTRAINTS)
	rm -rf $(COMPAT_VENV)
	$(COMPAT_PY) -m venv $(COMPAT_VENV)
	$(COMPAT_BIN)/python -m pip install --quiet --upgrade pip
	$(COMPAT_BIN)/python -m pip install --quiet -r requirements.txt $(addprefix -c ,$(CONSTRAINTS))
	$(COMPAT_BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(EDITABLE) $(COMPAT_BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

demo: $(STAMP) ## synthetic data + every notebook through papermill on configs/demo.yaml
	$(BIN)/fivek run --config $(CONFIG)

# -n auto: one pytest-xdist worker per core; loadgroup keeps the smoke run's tests on one worker
PYTEST := $(BIN)/python -m pytest -q -n auto --dist loadgroup

test: $(STAMP) ## the whole test suite (includes a papermill run of every notebook)
	$(PYTEST)

test-fast: $(STAMP) ## the tests without the slow notebook and training runs
	$(PYTEST) -m "not slow"

test-compat: $(COMPAT_STAMP) ## the fast tests + a notebook smoke run on Colab's versions (constraints/) and Python 3.13, in .venv-compat
	@$(if $(COMPAT_PYTHON),,echo "no Python 3.13 here (Colab's): the compat tests run on $$($(COMPAT_PY) -V)")
	@$(COMPAT_BIN)/python -c "import sys; from fivek_utils.core.versions import version_table; print('Python', sys.version.split()[0]); print(version_table())"
	$(COMPAT_BIN)/python -m pytest -q -n auto --dist loadgroup -m "not slow or compat"

test-rehearse: $(STAMP) ## configs/full.yaml through every notebook on a CPU at toy scale, weights where a user's are (7-8 min on 2 cores, 13 on busy ones)
	$(BIN)/fivek rehearse --root build/rehearse

bench: $(STAMP) ## the benchmarks (progressive learning, prediction, input pipeline, the face stage)
	$(BIN)/fivek bench progressive
	$(BIN)/fivek bench predict
	$(BIN)/fivek bench pipeline
	$(BIN)/fivek bench faces

bench-gpu: $(STAMP) ## on a GPU machine: precision, XLA, input pipeline, progressive at 384 px (~8 min)
	$(BIN)/fivek bench gpu

clean-outputs: ## delete generated data, models, reports and submissions
	rm -rf data/raw data/interim data/processed models/*/ reports/*/ submissions/*.csv submissions/*.yaml build/rehearse

clean: clean-outputs ## also delete the virtual environments
	rm -rf $(VENV) $(COMPAT_VENV)
