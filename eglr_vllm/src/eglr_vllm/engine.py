"""A vLLM engine for EGLR, built behind the guards, and the one way to run requests on it.

:class:`EGLREngine` builds ``vllm.LLM`` with the settings EGLR needs and refuses the others:

- chunked prefill and prefix caching off (a partial prefill samples no token; re-applications
  overwrite the last prompt position's keys/values, which a shared prefix block must not see),
  no speculative decoding, no pipeline or tensor parallelism (the model itself refuses them too,
  :func:`eglr_vllm.recursion._refuse_engine_features`);
- eager execution, no torch.compile (the gate's early exit synchronises with the host);
- the V1 model runner in this process (``VLLM_USE_V2_MODEL_RUNNER=0``,
  ``VLLM_ENABLE_V1_MULTIPROCESSING=0``): the model maps batch rows to requests through it;
- the model's generation config ignored (``generation_config="vllm"``): every sampling setting
  and stop token is the caller's.

Each request carries its own temperature, top-p and seed (vLLM's per-request seeded generator);
the EGLR settings are the engine's, changed between submissions with :meth:`EGLREngine.configure`
(the engine is idle then and keeps nothing between requests: prefix caching is off). A request
that vLLM preempted and recomputed is refused (:class:`PreemptedError`): its recomputed keys/values
would be the normal pass's, not EGLR's; size ``max_num_seqs`` and the KV cache to avoid it.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eglr.step import EGLRConfig

from eglr_vllm.recursion import RequestStatistics
from eglr_vllm.registry import eglr_architecture, register
from eglr_vllm.settings import check_supported, to_override

# Engine arguments EGLR fixes; a caller passing another value gets a ValueError naming it.
REQUIRED = {"enable_chunked_prefill": False, "enable_prefix_caching": False, "enforce_eager": True,
            "pipeline_parallel_size": 1, "tensor_parallel_size": 1, "speculative_config": None,
            "async_scheduling": False}
REQUIRED_ENV = {"VLLM_USE_V2_MODEL_RUNNER": "0", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


class PreemptedError(RuntimeError):
    """vLLM preempted and recomputed a request, so its EGLR statistics and tokens are not faithful."""


@dataclass(frozen=True)
class Request:
    """One prompt to decode: its token ids and sampling settings (temperature 0: greedy)."""

    prompt_ids: Sequence[int]
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None


@dataclass(frozen=True)
class Completion:
    """A request's generated tokens (its stop token included, like :func:`eglr.engine.generate`),
    why it stopped (``"eos"`` or ``"length"``), the sum of the chosen tokens' log-probabilities
    under the final distribution (temperature 1), and what EGLR did."""

    token_ids: list[int]
    finish_reason: str
    sum_logprob: float
    statistics: RequestStatistics


def checkpoint_architecture(model: str) -> str:
    """The architecture a checkpoint directory's config.json names."""
    config = Path(model) / "config.json"
    if not config.is_file():
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(model).architectures[0]
    return json.loads(config.read_text(encoding="utf-8"))["architectures"][0]


def _check_arguments(engine_kwargs: dict[str, Any]) -> dict[str, Any]:
    for name, value in engine_kwargs.items():
        if name in REQUIRED and value != REQUIRED[name]:
            raise ValueError(f"EGLR cannot run with {name}={value!r} (it needs {REQUIRED[name]!r}): "
                             + {"enable_chunked_prefill": "a partial prefill samples no token",
                                "enable_prefix_caching": "re-applications overwrite a prompt's last keys/values, "
                                                         "which would corrupt shared prefix blocks",
                                "enforce_eager": "CUDA graphs cannot capture the early exit's host syncs",
                                "pipeline_parallel_size": "the gate needs the whole model on one rank",
                                "tensor_parallel_size": "the gate reads full logits, gathered on rank 0 only",
                                "speculative_config": "speculative decoding samples several positions per step",
                                "async_scheduling": "a request stopped by a stop token would get one more "
                                                    "forward pass, counted as an EGLR step",
                                }[name])
    for name, value in REQUIRED_ENV.items():
        current = os.environ.get(name)
        if current is not None and current != value:
            raise ValueError(f"EGLR needs {name}={value} (the model maps rows to requests through the V1 model "
                             f"runner in this process), but it is set to {current!r}")
        os.environ[name] = value
    return {**engine_kwargs, **REQUIRED}


def build_llm(model: str, *, eglr: EGLRConfig | None, dtype: str = "float32", max_model_len: int,
              max_num_seqs: int = 64, seed: int = 0, tokenizer: str | None = None,
              **engine_kwargs: Any) -> Any:
    """``vllm.LLM`` on ``model`` (a checkpoint directory or hub id): EGLR's subclass of its
    architecture when ``eglr`` is given, vLLM's own model when it is None (the plain baseline,
    under the same engine settings)."""
    from vllm import LLM

    arguments = _check_arguments(dict(engine_kwargs))
    arguments.setdefault("max_num_batched_tokens", max(max_model_len, 8192))
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    overrides = None
    if eglr is not None:
        check_supported(eglr)
        register()
        overrides = {"architectures": [eglr_architecture(checkpoint_architecture(model))], "eglr": to_override(eglr)}
    llm = LLM(model=model, tokenizer=tokenizer, dtype=dtype, max_model_len=max_model_len, max_num_seqs=max_num_seqs,
              seed=seed, hf_overrides=overrides, generation_config="vllm", compilation_config={"mode": 0},
              **arguments)
    _check_built(llm)
    if eglr is not None:
        llm.collective_rpc(_bind_runner)
    return llm


def _check_built(llm: Any) -> None:
    """The settings vLLM actually resolved (a platform can override an argument)."""
    config = llm.llm_engine.vllm_config
    if config.scheduler_config.enable_chunked_prefill or config.cache_config.enable_prefix_caching:
        raise ValueError("vLLM turned chunked prefill or prefix caching on; EGLR cannot run under either")


def _bind_runner(worker: Any) -> None:
    worker.model_runner.get_model().eglr_bind(worker.model_runner)


def _configure(worker: Any, values: dict[str, Any]) -> None:
    from eglr_vllm.settings import from_override

    worker.model_runner.get_model().eglr_configure(from_override(values))


def _step_counts(worker: Any) -> dict[str, int]:
    return dict(worker.model_runner.get_model().eglr_step_counts)


def _pop_statistics(worker: Any, keys: list[str]) -> dict[str, RequestStatistics]:
    return worker.model_runner.get_model().eglr_pop_statistics(keys)


class EGLREngine:
    """An EGLR vLLM engine (``eglr=None``: plain vLLM) that turns :class:`Request` lists into
    :class:`Completion` lists, in order."""

    def __init__(self, model: str, *, eglr: EGLRConfig | None, stop_token_ids: Sequence[int],
                 max_model_len: int, **kwargs: Any) -> None:
        self.eglr = eglr
        self.stop_token_ids = [int(token) for token in stop_token_ids]
        self.max_model_len = max_model_len
        self.llm = build_llm(model, eglr=eglr, max_model_len=max_model_len, **kwargs)
        self._submitted = 0

    def configure(self, eglr: EGLRConfig) -> None:
        """Decode the next submissions with ``eglr`` (the same model and weights; nothing is in flight)."""
        if self.eglr is None:
            raise ValueError("this engine runs vLLM's own model (built with eglr=None); it cannot gate")
        check_supported(eglr)
        self.llm.collective_rpc(_configure, args=(to_override(eglr),))
        self.eglr = eglr

    def step_counts(self) -> dict[str, int]:
        """How many forward passes ran EGLR, how many of them mixed prefill and decode rows, and how
        many re-applications ran on the running rows alone (``sub_batch_passes``) or on the whole
        token batch (``full_batch_passes``, where the backend's metadata cannot be rebuilt)."""
        return self.llm.collective_rpc(_step_counts)[0]

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        """Decode ``requests`` all at once (vLLM batches them continuously)."""
        from vllm import SamplingParams, TokensPrompt

        keys = [f"eglr-{self._submitted + index}" for index in range(len(requests))]
        self._submitted += len(requests)
        params = []
        for key, request in zip(keys, requests):
            if len(request.prompt_ids) + request.max_new_tokens > self.max_model_len:
                raise ValueError(f"a prompt of {len(request.prompt_ids)} tokens + {request.max_new_tokens} new tokens "
                                 f"exceeds max_model_len={self.max_model_len}")
            params.append(SamplingParams(
                temperature=float(request.temperature), top_p=float(request.top_p), seed=request.seed,
                max_tokens=int(request.max_new_tokens), stop_token_ids=self.stop_token_ids, logprobs=0,
                detokenize=False, extra_args={"eglr_id": key}))
        prompts = [TokensPrompt(prompt_token_ids=list(request.prompt_ids)) for request in requests]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        statistics = self.llm.collective_rpc(_pop_statistics, args=(keys,))[0] if self.eglr is not None else {}
        completions = []
        for key, output in zip(keys, outputs):
            sample = output.outputs[0]
            stats = statistics.get(key) or RequestStatistics(self.eglr.k_max if self.eglr else 0)
            if stats.recomputed:
                raise PreemptedError(f"vLLM preempted request {key} and recomputed its keys/values without EGLR; "
                                     "lower max_num_seqs or give the KV cache more room (VLLM_CPU_KVCACHE_SPACE)")
            if self.eglr is not None and self.eglr.can_gate and stats.steps != len(sample.token_ids):
                raise RuntimeError(f"EGLR saw {stats.steps} sampling steps for request {key}, which has "
                                   f"{len(sample.token_ids)} tokens")
            logprob = sum(step[token].logprob for step, token in zip(sample.logprobs or [], sample.token_ids))
            completions.append(Completion(
                token_ids=list(sample.token_ids),
                finish_reason="length" if sample.finish_reason == "length" else "eos",
                sum_logprob=float(logprob),
                statistics=stats))
        return completions
