# Two commands matter: `make demo` (set up, then compare both strategies) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?=
EPOCHS ?= 3

.PHONY: install test lint types docs demo clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# The browser test drives Debian's Chromium (no browser download); installed here when missing (needs root).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq && apt-get install -y -qq chromium

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

types: install
	$(BIN)/mypy

docs: install
	$(BIN)/mkdocs build --strict --quiet

test: install $(CHROMIUM) lint types docs
	$(BIN)/pytest -q

# DATA empty: download the PyTorch tutorial's ants/bees photos (needs internet).
# Offline: make demo DATA=../shared/datasets/animals4 (or any photo folder).
demo: install
	$(BIN)/transferlab compare $(DATA) --backbone efficientnet_lite0 --epochs $(EPOCHS)

clean:
	rm -rf $(VENV) runs build .pytest_cache .mypy_cache .ruff_cache
