# larval's commands. Each target creates .venv with the machine's python3 when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench interop clean

# The compiled ESP helper is built by the install: a change to its source rebuilds it.
$(STAMP): pyproject.toml setup.py src/larval/esp/_helper.c src/larval/esp/_helper_build.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/larval demo

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

interop: $(STAMP)
	$(BIN)/pytest tests/interop $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m larval.bench all

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
