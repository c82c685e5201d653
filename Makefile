# The two everyday commands: `make book` and `make test`. Everything else is set up on demand.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= demo
CHAPTERS ?=
# CPU-only machines get the CPU build of torch (never a multi-GB CUDA build). On a GPU machine
# (nvidia-smi present) the torch already installed is kept, or pip's default (CUDA) build is used.
# Everything else is installed at the exact, tested versions of requirements/lock.txt (constraints;
# pyproject.toml holds the ranges a user's own environment may satisfy instead).
LOCK := requirements/lock.txt
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 1)

.PHONY: book test env lock clean-book help

help:
	@echo "make book   run every chapter (profile $(PROFILE)) and render the book"
	@echo "make test   run the test suite"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-installs only when pyproject.toml or the lock changes.
$(VENV)/.installed: pyproject.toml $(LOCK) | $(BIN)/python
	@if [ -z "$(HAS_GPU)" ] && ! $(BIN)/python -c "import torch" 2>/dev/null; then \
	  spec=$$(sed -n 's/^cpu = \["\(torch==[^"]*\)"\]/\1/p' pyproject.toml); \
	  echo "installing the CPU build of $$spec"; \
	  $(BIN)/python -m pip install -q --no-deps --extra-index-url $(TORCH_CPU_INDEX) "$$spec"; \
	fi
	$(BIN)/python -m pip install -q -c $(LOCK) -e ".[book,dev$(if $(HAS_GPU),,$(comma)cpu)]"
	@touch $@

comma := ,

env: $(VENV)/.installed

book: env
	$(BIN)/amage book --profile $(PROFILE) $(if $(CHAPTERS),--chapters $(CHAPTERS),)

test: env
	$(BIN)/python -m pytest -q

# After a deliberate upgrade in .venv (and a green `make test`): write that set as the new lock.
lock: env
	@{ sed -n '/^#/p' $(LOCK); $(BIN)/python -m pip freeze --exclude-editable --exclude amage-core --exclude torch; } > $(LOCK).new
	@mv $(LOCK).new $(LOCK) && echo "wrote $(LOCK)"

clean-book:
	rm -rf book/_build book/chapters
