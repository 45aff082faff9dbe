# Set-up on a fresh clone: `make demo` (install + run the example) or
# `make test` (install + run the tests). Each creates .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-all bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

demo: $(VENV)/.installed
	$(PY) examples/quickstart.py

test: $(VENV)/.installed
	$(PY) -m pytest -q

test-all: $(VENV)/.installed
	$(PY) -m pytest -q -m ''

bench: $(VENV)/.installed
	$(PY) bench/compile_time.py
	$(PY) bench/memory_cycles.py
	$(PY) bench/call_overhead.py
	$(PY) bench/lazy_overhead.py
	$(PY) bench/lazy_instructions.py
	$(PY) bench/bzip2.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
