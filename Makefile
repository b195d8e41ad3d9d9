# The README's two commands: `make run` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint types ssot bench mutate install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,redis]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)  ## start the gateway: in-memory engine, demo agent, chat page
	$(BIN)/runwire serve

test: $(STAMP)  ## lint, types, the SSOT guard and every test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/ssotcheck
	$(BIN)/python docs/_gen_config.py --check
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check src tests bench

types: $(STAMP)
	$(BIN)/mypy

ssot: $(STAMP)
	$(BIN)/ssotcheck

bench: $(STAMP)  ## runwire vs websockets, raw asyncio and python-socketio (needs gcc)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench

# Mutation testing (docs/architecture.md, "Mutation testing"): a fresh run of every mutant
# of the core modules, then the score per module. MUTANTS='runwire.manager.*' re-runs only
# those (globs allowed) against the results kept in mutants/.
MUTATE_JOBS ?= 2
MUTANTS ?=

mutate: $(STAMP)  ## mutation score of protocol, resume, manager, the memory engine, the runtime
	$(BIN)/python -m pip install --quiet -e '.[dev,redis,mutate]'
	$(if $(MUTANTS),,rm -rf mutants)
	$(BIN)/mutmut run --max-children $(MUTATE_JOBS) $(foreach m,$(MUTANTS),'$(m)')
	$(BIN)/python docs/_mutation_score.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .ssotcheck_cache mutants
