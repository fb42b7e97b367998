# Set-up and everyday commands. Every target creates .venv on first use and installs every
# local distribution (core, adapters/*, adaptertest) in editable mode.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Every local distribution: the core at the root, then each folder with a pyproject.toml.
DISTS := . $(patsubst %/pyproject.toml,%,$(wildcard adaptertest/pyproject.toml adapters/*/pyproject.toml))
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck pytest bench clean

install: $(STAMP)

$(STAMP): pyproject.toml $(wildcard adaptertest/pyproject.toml adapters/*/pyproject.toml)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(foreach d,$(DISTS),-e $(d)$(if $(filter .,$(d)),[dev]))
	touch $(STAMP)

demo: install
	$(BIN)/python examples/quickstart.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy .

pytest: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench: install
	$(BIN)/python bench/memory.py
	@for b in bench/postgres.py bench/kafka.py; do \
		if [ -f $$b ]; then $(BIN)/python $$b || exit 1; fi; \
	done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
