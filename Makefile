# The two everyday commands: `make book` and `make test`. Everything else is set up on demand.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= demo
CHAPTERS ?=
# CPU-only machines get the CPU build of torch (never a multi-GB CUDA build). On a GPU machine
# (nvidia-smi present) the torch already installed is kept, or pip's default (CUDA) build is used.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 1)

.PHONY: book test env clean-book help

help:
	@echo "make book   run every chapter (profile $(PROFILE)) and render the book"
	@echo "make test   run the test suite"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-installs only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@if [ -z "$(HAS_GPU)" ] && ! $(BIN)/python -c "import torch" 2>/dev/null; then \
	  spec=$$(sed -n 's/^cpu = \["\(torch==[^"]*\)"\]/\1/p' pyproject.toml); \
	  echo "installing the CPU build of $$spec"; \
	  $(BIN)/python -m pip install -q --no-deps --extra-index-url $(TORCH_CPU_INDEX) "$$spec"; \
	fi
	$(BIN)/python -m pip install -q -e ".[dev$(if $(HAS_GPU),,$(comma)cpu)]"
	@touch $@

comma := ,

env: $(VENV)/.installed

book: env
	$(BIN)/amage book --profile $(PROFILE) $(if $(CHAPTERS),--chapters $(CHAPTERS),)

test: env
	$(BIN)/python -m pytest -q

clean-book:
	rm -rf book/_build book/chapters
