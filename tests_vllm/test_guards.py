"""The engine guards: every engine feature EGLR cannot run under is refused, naming it."""
from __future__ import annotations

import math

import pytest

from tiny import random_prompts, save_checkpoint, tiny_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return str(save_checkpoint(tiny_model("qwen2"), tmp_path_factory.mktemp("qwen2")))


@pytest.mark.parametrize("argument,value,message", [
    ("enable_chunked_prefill", True, "enable_chunked_prefill=True"),
    ("enable_prefix_caching", True, "enable_prefix_caching=True"),
    ("enforce_eager", False, "enforce_eager=False"),
    ("pipeline_parallel_size", 2, "pipeline_parallel_size=2"),
    ("tensor_parallel_size", 2, "tensor_parallel_size=2"),
    ("speculative_config", {"method": "ngram", "num_speculative_tokens": 2}, "speculative_config="),
    ("async_scheduling", True, "async_scheduling=True"),
])
def test_refused_engine_arguments_are_named(checkpoint, argument, value, message) -> None:
    from eglr.step import EGLRConfig
    from eglr_vllm.engine import build_llm

    with pytest.raises(ValueError, match=message):
        build_llm(checkpoint, eglr=EGLRConfig(layer_span=2), max_model_len=64, **{argument: value})


def test_unsupported_eglr_options_are_named(checkpoint) -> None:
    from eglr.step import EGLRConfig
    from eglr_vllm.engine import build_llm

    with pytest.raises(ValueError, match="kv_policy='keep_first'"):
        build_llm(checkpoint, eglr=EGLRConfig(layer_span=2, kv_policy="keep_first"), max_model_len=64)


def test_the_model_itself_refuses_chunked_prefill(checkpoint) -> None:
    """vllm.LLM built directly on the EGLR architecture, with vLLM's default (chunked prefill on)."""
    from vllm import LLM

    from eglr.step import EGLRConfig
    from eglr_vllm.registry import register
    from eglr_vllm.settings import to_override

    register()
    with pytest.raises(Exception, match="chunked prefill"):
        LLM(model=checkpoint, skip_tokenizer_init=True, max_model_len=64, enforce_eager=True, dtype="float32",
            compilation_config={"mode": 0}, enable_chunked_prefill=True,
            hf_overrides={"architectures": ["EGLRQwen2ForCausalLM"],
                          "eglr": to_override(EGLRConfig(layer_span=2))})


def test_the_model_itself_refuses_async_scheduling() -> None:
    """vLLM turns async scheduling on by default on GPUs (the CPU platform always turns it off, so an engine
    built here never has it): the model's own guard, on an engine configuration that has it."""
    from types import SimpleNamespace

    from eglr_vllm.recursion import _refuse_engine_features

    config = SimpleNamespace(
        scheduler_config=SimpleNamespace(enable_chunked_prefill=False, async_scheduling=True),
        cache_config=SimpleNamespace(enable_prefix_caching=False),
        parallel_config=SimpleNamespace(pipeline_parallel_size=1, tensor_parallel_size=1),
        speculative_config=None, compilation_config=SimpleNamespace(mode=0),
        model_config=SimpleNamespace(enforce_eager=True))
    with pytest.raises(ValueError, match="async scheduling.*pass async_scheduling=False"):
        _refuse_engine_features(config)
    config.scheduler_config.async_scheduling = False
    _refuse_engine_features(config)


def test_a_preempted_request_is_refused(checkpoint) -> None:
    """A KV cache of six 32-token blocks cannot hold four 40-token requests: vLLM preempts one and recomputes it
    without EGLR, which the engine detects."""
    from eglr.step import EGLRConfig
    from eglr_vllm.engine import EGLREngine, PreemptedError, Request

    engine = EGLREngine(checkpoint, eglr=EGLRConfig(layer_span=2, tau=-math.inf), stop_token_ids=[],
                        max_model_len=64, max_num_seqs=4, skip_tokenizer_init=True, num_gpu_blocks_override=6,
                        block_size=32)
    with pytest.raises(PreemptedError, match="preempted"):
        engine.generate([Request(prompt.tolist(), 30) for prompt in random_prompts([10, 11, 12, 13], seed=5)])
