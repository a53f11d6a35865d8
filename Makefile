# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# Each creates .venv with torch==2.13.0 (CPU) and everything else it needs.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: setup build test test-triton demo bench lint clean

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH)" "setuptools>=77" wheel ninja
	$(PIP) install -q --no-build-isolation -e ".[test,data,dev]"
	touch $@

setup: $(VENV)/.installed

# Incremental (ninja): a no-op when csrc/ is unchanged.
build: setup
	$(PY) setup.py -q build_ext --inplace

test: build
	$(PY) -m pytest -m "not triton" -q
	TRITON_INTERPRET=1 $(PY) -m pytest -m triton -q

demo: build
	$(PY) -m pytest benchmarks -q --benchmark-columns=min,median,mean,rounds --benchmark-sort=name

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf build $(VENV) mednns_fast/*.so *.egg-info
