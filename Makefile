# Set-up and everyday commands. Every target creates .venv on first use and installs every
# local distribution (core, adapters/*, adaptertest, ops) in editable mode, and Debian's
# Chromium for the web UI's browser tests.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Every local distribution: the core at the root, then each folder with a pyproject.toml.
DISTS := . $(patsubst %/pyproject.toml,%,$(wildcard adaptertest/pyproject.toml adapters/*/pyproject.toml ops/pyproject.toml))
STAMP := $(VENV)/.installed

.PHONY: install browser demo test lint typecheck pytest bench clean

install: $(STAMP) browser

# The browser tests (pytest -m browser) drive Debian's Chromium; install it if missing.
# Needs root (CI runs as root); elsewhere, install the two packages yourself.
CHROMIUM := /usr/bin/chromium
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
		else \
			echo "warning: $(CHROMIUM) is missing; the browser tests will fail until you run" \
				"'apt-get install chromium chromium-driver' as root" >&2; \
		fi; \
	fi

$(STAMP): pyproject.toml $(wildcard adaptertest/pyproject.toml adapters/*/pyproject.toml ops/pyproject.toml)
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
	@for b in bench/postgres.py bench/kafka.py bench/ops.py; do \
		if [ -f $$b ]; then $(BIN)/python $$b || exit 1; fi; \
	done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
