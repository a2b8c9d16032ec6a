"""Shared fixtures: the repository layout, the real benchmark files, and Hydra composition."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tiny models gain nothing from intra-op threads, and OpenMP threads spin badly when pytest-xdist
# workers (or other processes) share the 2 cores: one thread per process keeps the suite fast.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "configs"
DATA_DIR = Path(os.environ.get("EGLR_DATA_DIR", REPO_ROOT.parent / "shared" / "data" / "benchmarks"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real benchmark test sets (../shared/data/benchmarks); tests needing them skip without it."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"benchmark data not found at {DATA_DIR} (set EGLR_DATA_DIR)")
    return DATA_DIR


def compose(overrides: list[str] | None = None, return_hydra_config: bool = False):
    """The runner's config as `python -m eglr.run <overrides>` would see it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose("run", overrides=overrides or [], return_hydra_config=return_hydra_config)
