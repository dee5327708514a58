# The two commands that set up a fresh machine:
#   make demo   create .venv with pinned packages, run the workflow on the embedded default
#   make test   create .venv with pinned packages, run the tests
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all
# Rules start `python` and `transformers` by name: the venv's must come first.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: venv demo demo-seeds test lint dag docs clean

$(STAMP): requirements.txt constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Juicebox needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==26.3
	$(BIN)/pip install --quiet -r requirements.txt -c constraints.txt
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/snakemake --profile profiles/local --cores $(CORES)

# The demo for each of SEEDS (each a full run: the seed makes the data, the models and the
# samples), its results/eval.json kept as results/seeds/eval-<seed>.json, then the README's tables.
SEEDS ?= 42 43 44
demo-seeds: venv
	mkdir -p results/seeds
	for seed in $(SEEDS); do \
	  $(BIN)/snakemake --profile profiles/local --cores $(CORES) --config seed=$$seed && \
	  cp results/eval.json results/seeds/eval-$$seed.json || exit 1; \
	done
	$(BIN)/python scripts/demo_seeds.py $(foreach seed,$(SEEDS),results/seeds/eval-$(seed).json)

test: venv
	$(BIN)/pytest

lint: venv
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check .

dag: venv
	$(BIN)/snakemake --rulegraph | dot -Tsvg > docs/rulegraph.svg

docs: venv
	$(BIN)/python scripts/config_reference.py

clean:
	rm -rf results .snakemake
