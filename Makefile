# The README's two commands: `make run` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint types ssot bench install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,redis,langgraph,pydantic-ai]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)  ## start the gateway: in-memory engine, demo agent, chat page
	$(BIN)/runwire serve

test: $(STAMP)  ## lint, types, the SSOT guard and every test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	$(BIN)/ssotcheck
	$(BIN)/python docs/_gen_config.py --check
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check src tests bench examples

types: $(STAMP)
	$(BIN)/mypy

ssot: $(STAMP)
	$(BIN)/ssotcheck

bench: $(STAMP)  ## runwire vs websockets, raw asyncio and python-socketio (needs gcc)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .ssotcheck_cache
