# convertctl — every target installs what it needs first, so a fresh clone needs only `make demo` / `make test`.
PYTHON     ?= python3
VENV       ?= .venv
# Exact pin, installed FIRST: it picks the local CPU wheel. A looser spec pulls GBs of CUDA packages.
TORCH_SPEC ?= torch==2.13.0
EXTRAS     ?= all,dev
RECIPE     ?= recipes/efficientnet_lite0.yaml
PYTEST_ARGS ?=

PY   := $(VENV)/bin/python
PIP  := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed

.PHONY: install data demo test test-fast lint bench clean help

help:
	@echo "make demo    install, then run $(RECIPE)"
	@echo "make test    install, then run the whole test suite"
	@echo "make lint | bench | clean"

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -c constraints.txt -e ".[$(EXTRAS)]"
	@# Guard: fail loudly if anything replaced the CPU torch wheel.
	$(PY) -c "import torch, sys; v = torch.__version__; print('torch', v); sys.exit(0 if '+cpu' in v or not torch.cuda.is_available() else 1)"
	touch $(STAMP)

data: install calib_data/images/.complete calib_data/digits/.complete

calib_data/images/.complete: calib_data/materialise.py
	$(PY) calib_data/materialise.py calib_data/images

calib_data/digits/.complete: calib_data/materialise_digits.py
	$(PY) calib_data/materialise_digits.py calib_data

demo: data
	$(VENV)/bin/convertctl run $(RECIPE)

test: data
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: data
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check convertctl tests benchmarks calib_data recipes

bench: data
	$(PY) benchmarks/run_all.py

clean:
	rm -rf out .pytest_cache build *.egg-info
