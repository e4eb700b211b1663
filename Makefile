# The two commands that matter (see README.md): `make demo` and `make test`.
# Each creates .venv and installs the project from setup.cfg on its own.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export BIOBERT_DATA_DIR ?= $(abspath ../shared/data)
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED = 1
# pytest-xdist workers: most tests are single-threaded XLA compiles, so one per core.
TEST_WORKERS ?= 2

.PHONY: venv demo demo-quick lint test test-fast bench clean

# setup.cfg declares compatible ranges; constraints.txt is the exact set CI tests.
$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[test,notebook,tpu]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m experiments.main_job --workdir=$${WORKDIR:-work/main_job}

demo-quick: venv
	$(PY) -m experiments.main_job --quick --workdir=$${WORKDIR:-work/main_job_quick}

# Lint first: seconds, and a red lint fails CI before the 15-minute suite.
lint: venv
	$(VENV)/bin/ruff check .

test: venv lint
	$(PY) -m pytest tests -n $(TEST_WORKERS) --dist worksteal

# The inner loop: everything but the tests marked slow (subprocesses, notebooks, the main
# job, corpus-wide checks); a few minutes on the 2-core box.
test-fast: venv lint
	$(PY) -m pytest tests -m "not slow" -n $(TEST_WORKERS) --dist worksteal

clean:
	rm -rf $(VENV) work
