# keepstone — the commands in README.md.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
CODE   := $(wildcard src tests bench scripts)

.PHONY: run test all lint typecheck format docs bench reliability clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,postgres,s3,ui,langgraph]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m keepstone.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

format: $(STAMP)
	$(BIN)/ruff format $(CODE)

lint: $(STAMP)
	$(BIN)/ruff format --check $(CODE)
	$(BIN)/ruff check $(CODE)

typecheck: $(STAMP)
	$(BIN)/mypy src

all: lint typecheck test

docs: $(STAMP)
	$(BIN)/python scripts/gen_cli_docs.py

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,postgres,s3,ui,bench]'
	$(BIN)/python -m bench $(BENCH_ARGS)

# The long campaign: 200 SIGKILL trials per durable backend, then a long
# model-based run. CI runs a bounded subset of both inside make test.
reliability: $(STAMP)
	$(BIN)/python -m tests.reliability.campaign --trials $(or $(TRIALS),200)
	KEEPSTONE_MODEL_EXAMPLES=$(or $(EXAMPLES),200) KEEPSTONE_MODEL_STEPS=$(or $(STEPS),60) \
	  $(BIN)/python -m pytest -q tests/test_model_based.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
