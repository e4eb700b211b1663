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

.PHONY: venv demo demo-quick test test-fast bench clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,notebook,tpu]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m experiments.main_job --workdir=$${WORKDIR:-work/main_job}

demo-quick: venv
	$(PY) -m experiments.main_job --quick --workdir=$${WORKDIR:-work/main_job_quick}

test: venv
	$(PY) -m pytest tests -n $(TEST_WORKERS) --dist worksteal

# The inner loop: everything but the tests marked slow (subprocesses, notebooks, the main
# job, corpus-wide checks); a few minutes on the 2-core box.
test-fast: venv
	$(PY) -m pytest tests -m "not slow" -n $(TEST_WORKERS) --dist worksteal

clean:
	rm -rf $(VENV) work
