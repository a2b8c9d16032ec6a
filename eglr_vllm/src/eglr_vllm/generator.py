"""The study runner's generator for ``engine=vllm``: rollouts in, ungraded records out.

It writes the same records as the HF generator (:class:`eglr.runner.Generator`), built by the one
record builder (:func:`eglr.runner.build_record`) from the same prompt token ids (the job's own
tokenizer renders them, and decodes the generated tokens), so a record differs from the HF engine's
only where the engines do: ``engine`` (hence ``settings_hash``), timing, float noise in
``mean_logprob`` / ``mean_stop_kl``, and sampled rollouts (vLLM's sampler draws differently from
ours; a sample is still fixed by its seed, which each request carries).

One vLLM engine serves the whole job. The runner plans batches problem-major, one (layer span,
temperature) cell each; :meth:`VLLMGenerator.submissions` merges consecutive batches of the same
layer span, so all temperatures and samples of a layer span for a block of problems go to vLLM at
once. Between submissions of different layer spans the idle engine is reconfigured
(:meth:`eglr_vllm.engine.EGLREngine.configure`), which is the same as building an engine for that
span (nothing carries over between requests with prefix caching off) without reloading weights.
Records are written per submission: a killed job loses at most the submission in flight, and the
store's resume skips what was written.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from omegaconf import DictConfig, OmegaConf

from eglr.runner import ModelLoader, PromptIds, Rollout, build_record, eglr_config, record_fields
from eglr.schema import RolloutRecord
from eglr.text import TextGeneration

from eglr_vllm.engine import EGLREngine, Request


class VLLMGenerator:
    """Rollouts -> ungraded records through one EGLR vLLM engine (built at the first submission)."""

    def __init__(self, cfg: DictConfig, settings: str, load: ModelLoader) -> None:
        self.cfg = cfg
        self.fixed = record_fields(cfg, settings)
        self.checkpoint, self.tokenizer, self.stop_token_ids = _checkpoint(cfg, load)
        self.encode = PromptIds(self.tokenizer, cfg.prompt)
        self.engine: EGLREngine | None = None

    def submissions(self, batches: list[list[Rollout]]) -> Iterator[list[Rollout]]:
        """Consecutive planned batches of one layer span, merged (every temperature and sample)."""
        merged: list[Rollout] = []
        for batch in batches:
            if merged and batch[0].layer_span != merged[0].layer_span:
                yield merged
                merged = []
            merged.extend(batch)
        if merged:
            yield merged

    def _engine(self, layer_span: int) -> EGLREngine:
        config = eglr_config(self.cfg, layer_span)
        if self.engine is None:
            options = self.cfg.vllm
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(options.kv_cache_gib))
            if self.cfg.torch_threads:
                import torch

                torch.set_num_threads(int(self.cfg.torch_threads))
            _check_platform(str(self.cfg.device))
            self.engine = EGLREngine(
                str(self.checkpoint), eglr=config, stop_token_ids=self.stop_token_ids,
                max_model_len=int(options.max_model_len), max_num_seqs=int(options.max_num_seqs),
                dtype=self.cfg.model.dtype, seed=int(self.cfg.generation.seed), skip_tokenizer_init=True)
        elif self.engine.eglr != config:
            self.engine.configure(config)
        return self.engine

    def __call__(self, rollouts: list[Rollout]) -> list[RolloutRecord]:
        cfg = self.cfg
        engine = self._engine(rollouts[0].layer_span)
        max_new_tokens = int(cfg.generation.max_new_tokens)
        requests = [Request(self.encode(rollout.problem), max_new_tokens, temperature=rollout.temperature,
                            top_p=float(cfg.generation.top_p), seed=rollout.seed) for rollout in rollouts]
        started = time.perf_counter()
        completions = engine.generate(requests)
        seconds = round((time.perf_counter() - started) / len(rollouts), 4)
        records = []
        for rollout, completion in zip(rollouts, completions):
            stats = completion.statistics
            generation = TextGeneration(
                text=self.tokenizer.decode(completion.token_ids, skip_special_tokens=True),
                num_tokens=len(completion.token_ids), num_gated=stats.gated,
                num_reapplications=stats.reapplications, num_converged=stats.converged,
                reapplication_histogram=tuple(stats.histogram[:engine.eglr.k_max]),
                mean_stop_kl=stats.mean_stop_kl, finish_reason=completion.finish_reason,
                sum_logprob=completion.sum_logprob)
            records.append(build_record(self.fixed, rollout, generation, seconds))
        return records


def _checkpoint(cfg: DictConfig, load: ModelLoader) -> tuple[Path | str, Any, list[int]]:
    """The directory (or hub id) vLLM loads, the job's tokenizer, and its resolved stop tokens.

    ``source: random`` models exist only in memory: the job's loader builds one and it is saved once,
    by content, under ``$EGLR_CACHE/vllm-random/``. Other sources are read where the HF engine reads
    them; their stop tokens are resolved as :func:`eglr.models.load_model` resolves them.
    """
    from eglr.models import load_tokenizer, resolve_path, resolve_special_tokens

    model_cfg = cfg.model
    if model_cfg.source == "random":
        model, tokenizer = load()
        return _saved_random(model_cfg, model, tokenizer), tokenizer, list(model.generation_config.eos_token_id)
    if model_cfg.source == "packaged":
        from eglr.weights import checkpoint_dir

        location: Path | str = checkpoint_dir(model_cfg)
    elif model_cfg.source == "local":
        location = resolve_path(model_cfg.path)
    else:
        location = model_cfg.hub_id
    from transformers import GenerationConfig

    tokenizer = load_tokenizer(model_cfg.get("tokenizer") or str(location), revision=model_cfg.revision)
    try:
        generation_config = GenerationConfig.from_pretrained(str(location), revision=model_cfg.revision)
    except OSError:
        generation_config = GenerationConfig()
    holder = SimpleNamespace(generation_config=generation_config)
    resolve_special_tokens(holder, tokenizer, model_cfg.get("extra_eos_token_ids") or ())
    return location, tokenizer, list(generation_config.eos_token_id)


def _saved_random(model_cfg: Any, model: Any, tokenizer: Any) -> Path:
    from eglr.weights import cache_root

    description = json.dumps(OmegaConf.to_container(model_cfg, resolve=True), sort_keys=True)
    digest = hashlib.sha256(description.encode()).hexdigest()[:16]
    path = cache_root() / "vllm-random" / f"{model_cfg.name}-{digest}"
    if not (path / "config.json").is_file():
        partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        model.save_pretrained(partial, safe_serialization=True)
        tokenizer.save_pretrained(partial)
        try:
            partial.rename(path)
        except OSError:  # another job saved it first
            shutil.rmtree(partial, ignore_errors=True)
    return path


def _check_platform(device: str) -> None:
    """vLLM takes no device argument: its platform is the installed build's (``vllm-cpu`` or
    ``vllm`` for GPUs), which must be the job's device, since the records and settings hash name it."""
    from vllm.platforms import current_platform

    from eglr.models import resolve_device

    wanted = resolve_device(device).type
    if current_platform.device_type != wanted:
        raise ValueError(f"device={device!r} (resolved to {wanted!r}) but the installed vLLM runs on "
                         f"{current_platform.device_type!r}: install the vLLM build for {wanted!r} "
                         f"or set device={current_platform.device_type}")
