"""The vLLM tests: they run in .venv-vllm (make test-vllm) and skip, saying why, without vLLM.

One thread, no core binding and a 1 GiB CPU KV cache per engine: the machine is shared, and the
tiny models need no more.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import pytest  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # tests/tiny_models.py and tests/conftest.py's compose

try:
    import vllm  # noqa: F401

    import eglr_vllm.engine  # noqa: F401
    VLLM_MISSING = None
except ImportError as error:  # the only reason these tests skip
    VLLM_MISSING = f"vLLM / eglr_vllm cannot be imported ({error}); run `make vllm-setup` (or make test-vllm)"


def pytest_collection_modifyitems(config, items):
    if VLLM_MISSING:
        for item in items:
            item.add_marker(pytest.mark.skip(reason=VLLM_MISSING))


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    import torch

    torch.set_num_threads(1)
