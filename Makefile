# Two commands do all set-up on a fresh machine with Python 3.11+:
#   make demo   - a small search on CIFAR-10 (local Ray, local MLflow store in ./mlflow.db)
#   make test   - the test suite
# and `make docs` builds the docs site (mkdocs.yml) into site/.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Where CIFAR-10 lives (the folder holding cifar-10-batches-py/); downloaded there if missing.
DATA_DIR ?= $(or $(SEARCHER_DATA_DIR),data)
DEMO_ARGS ?=

.PHONY: demo test test-fast lint docs ui promote clean

# pip compiles the packages' bytecode on one core, compileall on all of them: half the install's
# time. (A few files in the wheels are for newer Pythons and do not compile; pip skips them too.)
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-compile --upgrade pip
	$(PY) -m pip install -q --no-compile -e '.[test,docs]'
	$(PY) -m compileall -q -j0 $(VENV)/lib >/dev/null || true
	touch $@

demo: $(VENV)/.installed
	$(PY) -m searcher.run spaces/cifar10.py --data-dir $(DATA_DIR) $(DEMO_ARGS)

# The suite on TEST_WORKERS processes (pytest-xdist), each taking whole test files in the order
# tests/conftest.py gives them, longest first (the cluster walk on namespace hosts leads), and
# ending with its 20 slowest tests. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder --durations=20 $(PYTEST_ARGS)

# The edit-test loop, under a minute: the tests that start no real service and take no seconds.
test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "not services and not slow" -q $(PYTEST_ARGS)

# The package's layers (.importlinter): a module importing across them fails the build.
lint: $(VENV)/.installed
	$(VENV)/bin/lint-imports

# The docs site, strictly: a broken link or anchor, a page left out of the nav, or a command
# whose --help fails (the CLI reference is generated) stops the build.
docs: $(VENV)/.installed
	$(VENV)/bin/mkdocs build --strict --site-dir site

# The MLflow UI on the store `make demo` logs to (searcher ui: $MLFLOW_TRACKING_URI, else ./mlflow.db).
ui: $(VENV)/.installed
	$(PY) -m searcher ui

promote: $(VENV)/.installed
	$(PY) -m searcher promote --data-dir $(DATA_DIR)

clean:
	rm -rf ray_results mlflow.db mlartifacts
