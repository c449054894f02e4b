# The two commands: `make run` starts everything, `make test` runs the suite.
# Both create .venv from the project's files when it is missing or out of date.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m snippet_service.launcher

# Test processes side by side (pytest-xdist); TEST_PROCESSES=0 runs the suite in one.
TEST_PROCESSES ?= 3

test: $(STAMP)
	$(PY) -m pytest -n $(TEST_PROCESSES) --dist loadgroup $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check snippet_service tasks tests bench run_web.py run_worker.py
	$(VENV)/bin/mypy snippet_service tasks run_web.py run_worker.py

bench: $(STAMP)
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) var build *.egg-info
