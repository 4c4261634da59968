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

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,docs]'
	touch $@

demo: $(VENV)/.installed
	$(PY) -m searcher.run spaces/cifar10.py --data-dir $(DATA_DIR) $(DEMO_ARGS)

# The suite on TEST_WORKERS processes (pytest-xdist), each taking whole test files in the order
# tests/conftest.py gives them, longest first; then the cluster walk on namespace hosts alone,
# since its kill of a worker host mid-trial is a race that two cores' worth of other tests
# can make it lose. Each part ends with its 20 slowest tests. TEST_WORKERS=0: one process.
# (pytest's status 5, nothing selected, is fine for either part: PYTEST_ARGS may pick a file.)
TEST_WORKERS ?= 2
test: lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder --durations=20 -m "not cluster" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(PY) -m pytest --durations=20 -m cluster $(PYTEST_ARGS) || [ $$? -eq 5 ]

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
