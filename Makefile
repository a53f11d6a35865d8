# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# Each creates .venv with torch==2.13.0 (CPU) and everything else it needs.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: setup build test test-cpp demo lint clean

# Debian packages with real images for the data suite (installed where we are root; see docs/data.md),
# and the PostgreSQL server the zoo tests start on loopback (docs/mednns.md).
APT_PACKAGES := mricron-data dataset-fashion-mnist insighttoolkit5-examples postgresql

$(VENV)/.installed: pyproject.toml setup.py
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi; \
	else echo "note: not root, so not installing $(APT_PACKAGES) (data-suite tasks that need them are skipped)"; fi
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q "$(TORCH)" "setuptools>=77" wheel ninja
	$(PIP) install -q --no-build-isolation -e ".[test,data,dev,zoo]"
	$(PIP) install -q --no-deps stardist  # only its shipped nuclei image is used
	$(PIP) install -q --no-deps pytorch-fid  # the tests call its formula; its torchvision import is avoided
	touch $@

setup: $(VENV)/.installed

# Incremental (ninja): a no-op when csrc/ is unchanged.
build: setup
	$(PY) setup.py -q build_ext --inplace

test: build
	$(PY) -m pytest -m "not triton" -q -rs
	TRITON_INTERPRET=1 $(PY) -m pytest -m triton -q -rs

demo: build
	$(PY) -m pytest benchmarks/bench_*.py -q --benchmark-columns=min,median,mean,rounds --benchmark-sort=name

# The CMake library for libtorch users and its ctest.
test-cpp: setup
	cmake -S . -B cmake-build -DCMAKE_PREFIX_PATH="$$($(PY) -c 'import torch; print(torch.utils.cmake_prefix_path)')"
	cmake --build cmake-build -j2
	ctest --test-dir cmake-build --output-on-failure

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf build build-cuda cmake-build $(VENV) mednns_fast/*.so *.egg-info
