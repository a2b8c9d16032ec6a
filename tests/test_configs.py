"""Every config the README names composes, and the config groups cover the study."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from conftest import CONFIG_DIR, compose
from eglr.models import SOURCES
from eglr.weights import WeightsSpec

STUDY_MODELS = [
    "qwen2.5-0.5b-instruct", "qwen2.5-1.5b-instruct", "qwen2.5-3b-instruct", "qwen2.5-7b-instruct",
    "llama-3.2-1b-instruct", "llama-3.2-3b-instruct", "llama-3.1-8b-instruct", "gemma-2-2b-it",
]
STUDY_BENCHMARKS = ["math500", "gsm8k", "aime24", "amc23", "minerva_math", "olympiadbench"]


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_preset_resolves(experiment: str) -> None:
    resolved = OmegaConf.to_container(compose([f"experiment={experiment}"]), resolve=True)
    assert resolved["model"]["name"] and resolved["benchmark"]["name"]
    assert resolved["grid"]["layer_spans"] and resolved["grid"]["temperatures"]


def test_paper_experiment_sweeps_8_models_by_6_benchmarks() -> None:
    cfg = compose(["experiment=paper"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert params.model.split(",") == STUDY_MODELS
    assert params.benchmark.split(",") == STUDY_BENCHMARKS
    assert set(STUDY_MODELS) <= set(options("model"))
    assert set(STUDY_BENCHMARKS) <= set(options("benchmark"))


@pytest.mark.parametrize("model", options("model"))
def test_model_configs_are_complete(model: str) -> None:
    cfg = compose([f"model={model}"]).model
    assert cfg.name == model
    assert cfg.source in SOURCES
    assert cfg.dtype in {"float32", "float16", "bfloat16"}
    assert cfg.attn_implementation in {"eager", "sdpa", "flash_attention_2"}
    assert isinstance(cfg.num_layers, int) and cfg.num_layers > 0
    if cfg.source == "hub":
        assert "/" in cfg.hub_id and cfg.revision
    if cfg.source == "packaged":
        assert WeightsSpec.from_model_config(cfg).checkpoint_dtype == cfg.dtype


@pytest.mark.parametrize("benchmark", options("benchmark"))
def test_benchmark_configs_name_registered_benchmarks(benchmark: str) -> None:
    from eglr.benchmarks import get_benchmark, list_benchmarks

    cfg = compose([f"benchmark={benchmark}"]).benchmark
    assert cfg.name == benchmark and benchmark in list_benchmarks()
    assert get_benchmark(benchmark).name == benchmark


@pytest.mark.parametrize("launcher,target", [
    ("basic", "BasicLauncher"), ("parallel", "JoblibLauncher"), ("local", "LocalLauncher"),
    ("slurm", "SlurmLauncher"), ("joblib", "JoblibLauncher"), ("submitit_local", "LocalLauncher"),
])
def test_launchers_compose(launcher: str, target: str) -> None:
    cfg = compose([f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)


def test_slurm_launcher_resubmits_preempted_jobs() -> None:
    cfg = compose(["hydra/launcher=slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher.max_num_timeout > 0


@pytest.mark.parametrize("grid", options("grid"))
def test_grids_are_valid(grid: str) -> None:
    from eglr.runner import grid_cells

    cfg = compose([f"grid={grid}"]).grid
    cells = grid_cells(cfg)
    assert len(cells) == len(cfg.layer_spans) * len(cfg.temperatures)
    assert all(cell.samples == 1 for cell in cells if cell.temperature == 0)


def test_paper_grid_lets_temperature_pool_match_joint_budget() -> None:
    from eglr.runner import grid_cells

    cells = grid_cells(compose(["grid=paper"]).grid)
    temperature_pool = sum(c.samples for c in cells if c.layer_span == 0)
    joint_pool_without_extra = len({c.layer_span for c in cells}) * sum(
        c.samples for c in cells if c.layer_span == max(c.layer_span for c in cells))
    assert temperature_pool >= joint_pool_without_extra
