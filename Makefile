# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint docs venv install install-test example bench bench-smoke clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e '.[web]'

install-test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test,web]'
	# real OPA v1.20.2 for the policy tests; its metadata says Python >= 3.14, it runs on 3.11
	$(BIN)/pip install -q --ignore-requires-python 'opa-golib-python-bindings==0.4.4'

## demo: install, then run the end-to-end example on the embedded defaults
demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh demo-workspace

## example: regenerate execution/ (the example's ledger and report), byte-identical
example: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/regenerate.sh execution

## lint: ruff and mypy (strict on cas/ and promote/)
lint: install-test
	$(BIN)/ruff check cas promote tests docs
	$(BIN)/ruff format --check cas promote tests docs
	$(BIN)/mypy

## docs: regenerate docs/cli.md and the man pages docs/man/ from the click commands,
## and docs/web-openapi.json, the description of promote serve's JSON API
docs: install
	$(BIN)/python docs/gen_cli.py
	$(BIN)/python docs/gen_man.py
	$(BIN)/python -m promote.web.openapi docs/web-openapi.json

## test: the system packages (installed as root, else named), lint, the whole test suite
test:
	PYTHON="$(PYTHON)" bash .ci/system-packages.sh
	$(MAKE) --no-print-directory lint
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest

## bench: time cas against dd, git, git-annex and b3sum (minutes; see docs/performance.md)
bench: install-test
	$(BIN)/python bench/run.py $(BENCH_ARGS)

## bench-smoke: the same cases on tiny data, seconds long, so that the benchmark does not rot
bench-smoke: install-test
	$(BIN)/python bench/run.py --scale 0.01 --runs 1 --out bench/out/smoke.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo-workspace
