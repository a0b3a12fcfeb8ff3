# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint venv install install-test example bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

install-test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'

## demo: install, then run the end-to-end example on the embedded defaults
demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh

## lint: ruff and mypy (strict on cas/ and promote/)
lint: install-test
	$(BIN)/ruff check cas promote tests
	$(BIN)/ruff format --check cas promote tests
	$(BIN)/mypy

## test: lint, then the whole test suite
test: lint
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo-workspace
