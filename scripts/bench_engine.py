"""Benchmark the EGLR engine against the limits that bound it.

Two models: a randomly initialised ~67M-parameter Llama (``random-67m``; no
download, random prompts; its output projection is re-drawn with a larger
standard deviation so that next-token entropies vary from step to step as a
trained model's do) and, when its converted weights are in the cache (``make
real-models``), the real Qwen2.5-Coder-0.5B-Instruct (``qwen2.5-coder-0.5b-instruct``)
on real GSM8K chat prompts. Every generation runs exactly ``--new-tokens``
tokens (no end-of-sequence stop) so that the runs compared do the same number of
steps. Per model:

- ``bandwidth``: the machine's memory bandwidth, measured in the same run by a
  large tensor copy (bytes read + written per second), and by a large sum (bytes
  read per second) for reference.
- ``l0_vs_generate``: at batch 1, 8 and 32, greedy L = 0 against
  ``model.generate(do_sample=False)``: the tokens are checked equal, and the time
  ratio (ours / HF's) is the median of back-to-back ratios.
- ``l0_roofline_fraction``: L = 0 tokens/s at batch 1 over the weight-streaming
  roofline, the bandwidth divided by the bytes of weights read per token (every
  parameter but the input embedding, of which one row is read). At batch 1 on a
  CPU decoding streams every weight once per token, so this is the limit.
- ``eglr``: at batch 8 and 32 and L = 4 and 8, with a tau that gates 10-20% of
  steps: the measured EGLR time over the L = 0 time, against two predictions:
  ``predicted_per_row`` from the re-applications each row really needs (its own
  re-applications x (L layers + head) multiply-adds, at the per-row decode
  throughput the L = 0 run achieved) and ``predicted_from_passes`` from the
  re-application passes executed as if each ran on the whole batch (what the
  engine did before it re-applied only the running rows). Target:
  ``measured_over_per_row_prediction`` <= 1.15 at batch 8, <= 1.10 at batch 32.
- ``iteration``: what one re-application costs at the batch's context, for 1 row
  and for every row of the batch, split into the top layers (timed inside the
  call), the head (final norm + lm_head) and the rest (``overhead``: slicing the
  recorded layer arguments and cache views).
- ``head_bfloat16`` (real model): the same EGLR run with the re-applications' head
  computed in bfloat16: how much faster, and how many tokens change.

Timing uses process CPU time with ``--threads`` threads (default 1): the machine
is shared, and wall time mostly measures the other tenants. On a GPU
(``--device cuda``) it is wall time with the GPU synchronised. ``--models``
selects the models; a run updates only its models' entries in the output file.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

from eglr import EGLRConfig, generate
from eglr.cache import preallocated_cache
from eglr.logits import OutputHead, decoder_layers
from eglr.step import entropy
from eglr.top_layers import TopLayers

REPO_ROOT = Path(__file__).resolve().parents[1]
RANDOM_MODEL = dict(
    vocab_size=32000, hidden_size=512, intermediate_size=1536, num_hidden_layers=10, num_attention_heads=8,
    num_key_value_heads=8, max_position_embeddings=2048, tie_word_embeddings=False, bos_token_id=1,
    eos_token_id=None, pad_token_id=0,
)
REAL_MODEL = "qwen2.5-coder-0.5b-instruct"
K_MAX = 4
GATED_FRACTION = (0.10, 0.20)
TARGETS = {8: 1.15, 32: 1.10}


# --- timing ---------------------------------------------------------------------------------------

def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class Clock:
    """Process CPU time on a CPU, wall time (GPU synchronised) on an accelerator."""

    def __init__(self, device: torch.device) -> None:
        self.cpu = device.type == "cpu"

    def now(self) -> float:
        if self.cpu:
            return time.process_time()
        _synchronize()
        return time.perf_counter()

    def time(self, fn: Callable[[], object]) -> float:
        start = self.now()
        fn()
        return self.now() - start


def paired(times: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """Median over repeats of the ratio of two runs made back to back (they share the machine's mood)."""
    return statistics.median(a / b for a, b in zip(times[numerator], times[denominator]))


def repeat_runs(clock: Clock, runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(clock.time(run))
    return times


# --- the limits -----------------------------------------------------------------------------------

def measure_bandwidth(clock: Clock, device: torch.device, megabytes: int = 512, repeats: int = 7) -> dict[str, float]:
    """Bytes per second of a large copy (read + write) and of a large sum (read only)."""
    source = torch.ones(megabytes * 2**20 // 4, dtype=torch.float32, device=device)
    target = torch.empty_like(source)
    target.copy_(source)
    size = source.numel() * source.element_size()
    copy_seconds = statistics.median(clock.time(lambda: target.copy_(source)) for _ in range(repeats))
    read_seconds = statistics.median(clock.time(lambda: source.sum()) for _ in range(repeats))
    return {"copy_bytes_per_s": 2 * size / copy_seconds, "read_bytes_per_s": size / read_seconds,
            "tensor_megabytes": megabytes}


def weight_bytes_per_token(model) -> int:
    """Bytes of parameters a decoding step reads: all but the input embedding (one row of it is read)."""
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    seen: dict[int, torch.Tensor] = {}
    for parameter in model.parameters():
        seen[id(parameter)] = parameter
    if embedding is not head:
        seen.pop(id(embedding))
    return sum(p.numel() * p.element_size() for p in seen.values())


def multiply_adds(model, context: float) -> dict[str, float]:
    """Multiply-adds per row and token: one decoder layer at a given context length, and the head."""
    config = model.config
    layer = decoder_layers(model)[0]
    weights = sum(p.numel() for p in layer.parameters() if p.dim() == 2)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    attention = 2 * context * config.num_attention_heads * head_dim
    return {"layer": weights + attention, "head": model.get_output_embeddings().weight.numel()}


# --- the models and their prompts -----------------------------------------------------------------

def random_model(device: torch.device, dtype: torch.dtype):
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**RANDOM_MODEL)).eval()
    with torch.no_grad():
        model.get_output_embeddings().weight.normal_(0.0, 3.0 / RANDOM_MODEL["hidden_size"] ** 0.5)
    model = model.to(device=device, dtype=dtype)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0

    def batch(batch_size: int, prompt_length: int = 32, seed: int = 0):
        """Left-padded random prompts of lengths between prompt_length / 2 and prompt_length."""
        generator = torch.Generator().manual_seed(seed + batch_size)
        lengths = torch.randint(prompt_length // 2, prompt_length + 1, (batch_size,), generator=generator)
        lengths[0] = prompt_length
        input_ids = torch.zeros((batch_size, prompt_length), dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for row, length in enumerate(lengths.tolist()):
            input_ids[row, prompt_length - length:] = torch.randint(3, RANDOM_MODEL["vocab_size"], (length,),
                                                                    generator=generator)
            mask[row, prompt_length - length:] = 1
        return input_ids.to(device), mask.to(device)

    return model, batch


def real_model(device: torch.device, dtype: torch.dtype, directory: Path | None):
    """The real model and a function giving left-padded batches of GSM8K chat prompts (None if absent)."""
    from omegaconf import OmegaConf

    from eglr.benchmarks import load_benchmark
    from eglr.benchmarks.prompts import PromptConfig, render_prompt
    from eglr.models import load_model

    model_cfg = OmegaConf.load(REPO_ROOT / "configs" / "model" / f"{REAL_MODEL}.yaml") if directory is None else \
        OmegaConf.create({"name": REAL_MODEL, "source": "local", "path": str(directory), "revision": None,
                          "dtype": "float32", "attn_implementation": "sdpa", "num_layers": 24})
    try:
        model, tokenizer = load_model(model_cfg, device=str(device))
    except FileNotFoundError as error:
        print(f"skipping {REAL_MODEL}: {error}")
        return None
    model = model.to(dtype)
    problems = load_benchmark("gsm8k")
    prompt = PromptConfig()
    encoded = [tokenizer(render_prompt(tokenizer, p.problem, prompt), add_special_tokens=False)["input_ids"]
               for p in problems[:64]]

    def batch(batch_size: int, prompt_length: int | None = None, seed: int = 0):
        rows = [encoded[(seed + index) % len(encoded)] for index in range(batch_size)]
        padded = tokenizer.pad({"input_ids": rows}, padding=True, return_tensors="pt")
        return padded["input_ids"].to(device), padded["attention_mask"].to(device)

    return model, batch


# --- the measurements -----------------------------------------------------------------------------

def generators(model, input_ids, mask, new_tokens: int):
    """``model.generate`` (greedy, exactly ``new_tokens``) and ``eglr.generate`` under a given config."""

    def hf_generate():
        with torch.inference_mode():
            return model.generate(input_ids, attention_mask=mask, do_sample=False, max_new_tokens=new_tokens,
                                  min_new_tokens=new_tokens, eos_token_id=None,
                                  pad_token_id=model.generation_config.pad_token_id)

    def ours(config: EGLRConfig, **kwargs):
        return generate(model, input_ids, mask, eglr=config, max_new_tokens=new_tokens, eos_token_id=[], **kwargs)

    return hf_generate, ours


def l0_vs_generate(model, batch, clock, batch_size: int, new_tokens: int, repeats: int,
                   prompt_length: int | None = None) -> dict[str, object]:
    input_ids, mask = batch(batch_size, prompt_length) if prompt_length else batch(batch_size)
    hf_generate, ours = generators(model, input_ids, mask, new_tokens)
    tokens_equal = bool(torch.equal(hf_generate()[:, input_ids.shape[1]:], ours(EGLRConfig()).sequences))
    times = repeat_runs(clock, {"generate": hf_generate, "l0": lambda: ours(EGLRConfig())}, repeats)
    generated = batch_size * new_tokens
    return {
        "batch_size": batch_size, "prompt_length": input_ids.shape[1], "new_tokens": new_tokens,
        "tokens_equal_hf": tokens_equal,
        "generate_tokens_per_s": generated / statistics.median(times["generate"]),
        "l0_tokens_per_s": generated / statistics.median(times["l0"]),
        "l0_time_ratio_vs_generate": paired(times, "l0", "generate"),
        "seconds": times,
    }


@torch.inference_mode()
def decode_entropies(model, input_ids, mask, new_tokens: int) -> torch.Tensor:
    """Next-token entropies of every step of greedy L = 0 decoding (first token included)."""
    tokens = generate(model, input_ids, mask, eglr=EGLRConfig(), max_new_tokens=new_tokens, eos_token_id=[]).sequences
    full_ids = torch.cat([input_ids, tokens], dim=1)
    full_mask = torch.cat([mask, torch.ones_like(tokens)], dim=1)
    positions = (full_mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(full_ids, attention_mask=full_mask, position_ids=positions).logits
    return entropy(logits[:, input_ids.shape[1] - 1:-1].float().log_softmax(-1)).flatten()


def calibrated_tau(model, input_ids, mask, new_tokens: int, layer_span: int) -> tuple[float, object]:
    """A tau under which EGLR gates a fraction of steps within GATED_FRACTION, and that EGLR run.

    Re-applications change the trajectory and hence the entropies, so the matching quantile of the
    L = 0 entropies is only a start: bisect on the quantile using EGLR's observed fraction.
    """
    entropies = decode_entropies(model, input_ids, mask, new_tokens)
    low, high, quantile = 0.5, 0.99, 1 - sum(GATED_FRACTION) / 2
    best = None
    for _ in range(5):
        tau = torch.quantile(entropies.float(), quantile).item()
        output = generate(model, input_ids, mask, eglr=EGLRConfig(layer_span=layer_span, tau=tau, k_max=K_MAX),
                          max_new_tokens=new_tokens, eos_token_id=[])
        fraction = sum(output.num_gated) / sum(output.num_tokens)
        miss = abs(fraction - sum(GATED_FRACTION) / 2)
        if best is None or miss < best[0]:
            best = (miss, tau, output)
        if GATED_FRACTION[0] <= fraction <= GATED_FRACTION[1]:
            break
        low, high = (quantile, high) if fraction > GATED_FRACTION[1] else (low, quantile)
        quantile = (low + high) / 2
    return best[1], best[2]


def pass_sizes(run: Callable[[], object]) -> list[int]:
    """How many rows each re-application of ``run()`` ran on (instrumenting TopLayers.reapply)."""
    from unittest import mock

    sizes: list[int] = []
    original = TopLayers.reapply

    def counting(self, hidden, rows=None):
        sizes.append(hidden.shape[0])
        return original(self, hidden, rows)

    with mock.patch.object(TopLayers, "reapply", counting):
        run()
    return sizes


@torch.inference_mode()
def iteration_seconds_by_rows(model, input_ids, mask, clock, layer_span: int, context: int, sizes: list[int],
                              repeats: int = 7) -> dict[int, float]:
    """Seconds of one re-application (top layers + head) on r rows at the given context, for each r in sizes."""
    batch_size = input_ids.shape[0]
    cache = preallocated_cache(model.config, capacity=input_ids.shape[1] + context)
    head = OutputHead.of(model)
    filler = torch.full((batch_size, context), 5, dtype=torch.long, device=input_ids.device)
    full_ids = torch.cat([input_ids, filler], dim=1)
    full_mask = torch.cat([mask, torch.ones_like(filler)], dim=1)
    positions = (full_mask.cumsum(-1) - 1).clamp(min=0)
    seconds = {}
    with TopLayers(model, cache, layer_span) as top:
        model(input_ids=full_ids[:, :-1], attention_mask=full_mask[:, :-1], position_ids=positions[:, :-1],
              cache=cache, use_cache=True)
        top.end_step()
        model(input_ids=full_ids[:, -1:], attention_mask=full_mask, position_ids=positions[:, -1:], cache=cache,
              use_cache=True, logits_to_keep=1)
        for size in sizes:
            rows = None if size == batch_size else torch.arange(size, device=input_ids.device)
            hidden = top.hidden[:size]
            seconds[size] = statistics.median(clock.time(lambda: head(top.reapply(hidden, rows)))
                                              for _ in range(repeats))
    return seconds


def _interpolate(table: dict[int, float], size: int) -> float:
    sizes = sorted(table)
    if size in table:
        return table[size]
    below = max((s for s in sizes if s < size), default=sizes[0])
    above = min((s for s in sizes if s > size), default=sizes[-1])
    if above == below:
        return table[below]
    return table[below] + (table[above] - table[below]) * (size - below) / (above - below)


def eglr_against_predictions(model, batch, clock, batch_size: int, layer_span: int, new_tokens: int,
                             repeats: int) -> dict[str, object]:
    input_ids, mask = batch(batch_size)
    tau, output = calibrated_tau(model, input_ids, mask, new_tokens, layer_span)
    config = EGLRConfig(layer_span=layer_span, tau=tau, k_max=K_MAX)
    _, ours = generators(model, input_ids, mask, new_tokens)
    sizes = pass_sizes(lambda: ours(config))
    probe = sorted({s for s in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64) if s <= batch_size} | {max(sizes, default=1)})
    by_rows = iteration_seconds_by_rows(model, input_ids, mask, clock, layer_span, new_tokens // 2, probe)

    def prefill():
        with torch.inference_mode():
            model(input_ids=input_ids, attention_mask=mask, logits_to_keep=1)

    times = repeat_runs(clock, {"l0": lambda: ours(EGLRConfig()), "eglr": lambda: ours(config), "prefill": prefill},
                        repeats)
    l0_seconds, prefill_seconds = statistics.median(times["l0"]), statistics.median(times["prefill"])
    costs = multiply_adds(model, context=input_ids.shape[1] + new_tokens / 2)
    num_layers = len(decoder_layers(model))
    step_cost = num_layers * costs["layer"] + costs["head"]
    iteration_cost = layer_span * costs["layer"] + costs["head"]
    # L = 0 decodes new_tokens - 1 steps after its prefill; EGLR one more (the prompt's last token as a step)
    # plus, once per call, the head pass that checks its logits against the model's.
    seconds_per_row_multiply_add = (l0_seconds - prefill_seconds) / ((new_tokens - 1) * batch_size * step_cost)

    def predicted(reapplied_rows: int) -> float:
        extra = reapplied_rows * iteration_cost + batch_size * (step_cost + costs["head"])
        return 1 + extra * seconds_per_row_multiply_add / l0_seconds

    measured = paired(times, "eglr", "l0")
    per_row = predicted(sum(output.num_reapplications))
    from_timings = 1 + sum(_interpolate(by_rows, size) for size in sizes) / l0_seconds
    return {
        "batch_size": batch_size, "layer_span": layer_span, "k_max": K_MAX, "new_tokens": new_tokens,
        "prompt_length": input_ids.shape[1], "tau": tau,
        "gated_fraction": sum(output.num_gated) / sum(output.num_tokens),
        "reapplications_per_gated_step": sum(output.num_reapplications) / max(1, sum(output.num_gated)),
        "converged_fraction": sum(output.num_converged) / max(1, sum(output.num_gated)),
        "reapplication_passes": output.reapplication_passes,
        "rows_per_pass": sum(output.num_reapplications) / max(1, output.reapplication_passes),
        "measured": measured,
        "predicted_per_row": per_row,
        "predicted_from_passes": predicted(output.reapplication_passes * batch_size),
        "predicted_from_iteration_timings": from_timings,
        "measured_over_per_row_prediction": measured / per_row,
        "measured_over_iteration_timings_prediction": measured / from_timings,
        "pass_rows_histogram": {str(size): sizes.count(size) for size in sorted(set(sizes))},
        "iteration_seconds_by_rows": {str(size): value for size, value in by_rows.items()},
        "target": TARGETS.get(batch_size),
        "prefill_share_of_l0": prefill_seconds / l0_seconds,
        "head_share_of_iteration_multiply_adds": costs["head"] / iteration_cost,
        "seconds": times,
    }


class _LayerTimer:
    """Forward hooks that add up the time spent inside some modules."""

    def __init__(self, clock: Clock, modules) -> None:
        self.clock, self.total, self._start = clock, 0.0, 0.0
        self.handles = [h for m in modules for h in (m.register_forward_pre_hook(self._begin),
                                                     m.register_forward_hook(self._end))]

    def _begin(self, *args) -> None:
        self._start = self.clock.now()

    def _end(self, *args) -> None:
        self.total += self.clock.now() - self._start

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@torch.inference_mode()
def iteration_breakdown(model, batch, clock, batch_size: int, layer_span: int, context: int,
                        repeats: int = 20) -> dict[str, object]:
    """One re-application (top layers + head) for 1 row and for the whole batch, split into its parts."""
    input_ids, mask = batch(batch_size)
    cache = preallocated_cache(model.config, capacity=input_ids.shape[1] + context)
    head = OutputHead.of(model)
    result: dict[str, object] = {"batch_size": batch_size, "layer_span": layer_span}
    with TopLayers(model, cache, layer_span) as top:
        filler = torch.ones((batch_size, context), dtype=torch.long, device=input_ids.device)
        full_mask = torch.cat([mask, filler], dim=1)
        positions = (full_mask.cumsum(-1) - 1).clamp(min=0)
        full_ids = torch.cat([input_ids, filler * 5], dim=1)
        model(input_ids=full_ids[:, :-1], attention_mask=full_mask[:, :-1], position_ids=positions[:, :-1],
              cache=cache, use_cache=True)
        top.end_step()
        step_seconds = clock.time(lambda: model(input_ids=full_ids[:, -1:], attention_mask=full_mask,
                                                position_ids=positions[:, -1:], cache=cache, use_cache=True,
                                                logits_to_keep=1))
        for label, rows in (("one_row", torch.tensor([0], device=input_ids.device)), ("all_rows", None)):
            hidden = top.hidden if rows is None else top.hidden[rows]
            timer = _LayerTimer(clock, top.top_layers)
            reapply = [clock.time(lambda: top.reapply(hidden, rows)) for _ in range(repeats)]
            layers_seconds = timer.total / repeats
            timer.remove()
            head_seconds = statistics.median(clock.time(lambda: head(hidden)) for _ in range(repeats))
            reapply_seconds = statistics.median(reapply)
            total = reapply_seconds + head_seconds
            result[label] = {
                "rows": 1 if rows is not None else batch_size,
                "layers_s": layers_seconds, "head_s": head_seconds,
                "overhead_s": max(0.0, reapply_seconds - layers_seconds),
                "head_share": head_seconds / total, "overhead_share": max(0.0, reapply_seconds - layers_seconds) / total,
                "iteration_over_step": total / step_seconds,
            }
        result["step_s"] = step_seconds
        result["context"] = input_ids.shape[1] + context
    return result


class _BFloat16Head(OutputHead):
    """The model's head with the output projection computed in bfloat16 (an experiment, not an option)."""

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        weight = self.projection.weight_bfloat16
        logits = torch.nn.functional.linear(self.norm(hidden).to(torch.bfloat16), weight)
        return self.postprocess(logits.to(hidden.dtype))


def head_bfloat16(model, batch, clock, batch_size: int, layer_span: int, new_tokens: int,
                  repeats: int) -> dict[str, object]:
    """EGLR with the re-applications' head in bfloat16 against the float32 head: speed, and tokens changed."""
    from unittest import mock

    import eglr.engine

    input_ids, mask = batch(batch_size)
    tau, fp32_output = calibrated_tau(model, input_ids, mask, new_tokens, layer_span)
    config = EGLRConfig(layer_span=layer_span, tau=tau, k_max=K_MAX)
    _, ours = generators(model, input_ids, mask, new_tokens)
    projection = model.get_output_embeddings()
    projection.weight_bfloat16 = projection.weight.detach().to(torch.bfloat16)
    original_step = eglr.engine.eglr_step

    def step_with_bfloat16_head(config, top, head, *args, **kwargs):
        return original_step(config, top, _BFloat16Head(**vars(head)), *args, **kwargs)

    def with_bfloat16_head():
        with mock.patch.object(eglr.engine, "eglr_step", step_with_bfloat16_head):
            return ours(config)

    bf16_output = with_bfloat16_head()
    times = repeat_runs(clock, {"fp32_head": lambda: ours(config), "bf16_head": with_bfloat16_head}, repeats)
    del projection.weight_bfloat16
    same = fp32_output.sequences == bf16_output.sequences
    return {
        "batch_size": batch_size, "layer_span": layer_span, "new_tokens": new_tokens, "tau": tau,
        "bf16_over_fp32_time": paired(times, "bf16_head", "fp32_head"),
        "rows": batch_size,
        "rows_with_identical_tokens": int(sum(bool(row.all()) for row in same)),
        "first_differing_step_per_row": [None if bool(row.all()) else int((~row).nonzero()[0]) for row in same],
        "seconds": times,
    }


@torch.inference_mode()
def gemm_rows(model, clock, rows=(1, 2, 4, 8, 16, 32, 64), repeats: int = 10) -> dict[str, dict[str, float]]:
    """Seconds per call of the model's output projection and its first MLP up-projection for r rows."""
    layer = decoder_layers(model)[0]
    projections = {"head": model.get_output_embeddings(),
                   "mlp_up": next(m for m in layer.modules() if isinstance(m, torch.nn.Linear) and
                                  m.out_features == model.config.intermediate_size)}
    table: dict[str, dict[str, float]] = {}
    for name, projection in projections.items():
        weight = projection.weight
        table[name] = {}
        for count in rows:
            x = torch.randn(count, weight.shape[1], dtype=weight.dtype, device=weight.device)
            projection(x)
            table[name][str(count)] = statistics.median(clock.time(lambda: projection(x)) for _ in range(repeats))
    return table


def bench_model(name: str, model, batch, clock, args) -> dict[str, object]:
    print(f"== {name}")
    new_tokens = args.new_tokens if name != REAL_MODEL else args.real_new_tokens
    repeats = args.repeats if name != REAL_MODEL else args.real_repeats
    result: dict[str, object] = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "num_layers": len(decoder_layers(model)),
        "vocab_size": model.get_output_embeddings().weight.shape[0],
        "weight_bytes_per_token": weight_bytes_per_token(model),
    }
    result["gemm_seconds_by_rows"] = gemm_rows(model, clock)
    result["l0_vs_generate"] = []
    for batch_size in args.batch_sizes:
        run = l0_vs_generate(model, batch, clock, batch_size, new_tokens, repeats)
        print(f"  L=0 batch {batch_size}: {run['l0_tokens_per_s']:.1f} tok/s vs generate "
              f"{run['generate_tokens_per_s']:.1f} (ratio {run['l0_time_ratio_vs_generate']:.3f}), "
              f"tokens equal {run['tokens_equal_hf']}")
        result["l0_vs_generate"].append(run)
    if 1 in args.batch_sizes:
        single = next(run for run in result["l0_vs_generate"] if run["batch_size"] == 1)
        roofline = args.bandwidth["copy_bytes_per_s"] / result["weight_bytes_per_token"]
        result["roofline_tokens_per_s"] = roofline
        result["l0_roofline_fraction"] = single["l0_tokens_per_s"] / roofline
        print(f"  roofline {roofline:.1f} tok/s; L=0 reaches {result['l0_roofline_fraction']:.3f} of it")
    result["eglr"] = []
    for batch_size in args.eglr_batch_sizes:
        for layer_span in args.layer_spans:
            run = eglr_against_predictions(model, batch, clock, batch_size, layer_span, new_tokens, repeats)
            print(f"  EGLR batch {batch_size} L={layer_span}: gated {run['gated_fraction']:.3f}, measured "
                  f"{run['measured']:.3f}, per-row prediction {run['predicted_per_row']:.3f} "
                  f"(ratio {run['measured_over_per_row_prediction']:.3f}), passes prediction "
                  f"{run['predicted_from_passes']:.3f}, from iteration timings "
                  f"{run['predicted_from_iteration_timings']:.3f}")
            result["eglr"].append(run)
    result["iteration"] = [iteration_breakdown(model, batch, clock, batch_size, max(args.layer_spans),
                                               context=new_tokens // 2)
                           for batch_size in args.eglr_batch_sizes]
    if name == REAL_MODEL and not args.skip_bf16_head:
        result["head_bfloat16"] = head_bfloat16(model, batch, clock, args.eglr_batch_sizes[0], min(args.layer_spans),
                                                new_tokens, repeats)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["random-67m", REAL_MODEL])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--eglr-batch-sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--layer-spans", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--real-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--real-repeats", type=int, default=3)
    parser.add_argument("--long-prompt-length", type=int, default=1024)
    parser.add_argument("--long-batch-size", type=int, default=8)
    parser.add_argument("--skip-bf16-head", action="store_true")
    parser.add_argument("--real-model-dir", type=Path, default=None,
                        help="a converted checkpoint of the real model (default: its model config and cache)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="e.g. cuda; timings then use wall time")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--out", type=Path, default=None,
                        help="default results/bench/engine.json on CPU, engine_<device>_<dtype>.json elsewhere")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    if args.out is None:
        name = "engine.json" if device.type == "cpu" and args.dtype == "float32" else f"engine_{device.type}_{args.dtype}.json"
        args.out = REPO_ROOT / "results" / "bench" / name
    torch.set_num_threads(args.threads)
    clock = Clock(device)
    args.bandwidth = measure_bandwidth(clock, device)
    print(f"bandwidth: copy {args.bandwidth['copy_bytes_per_s'] / 1e9:.2f} GB/s, "
          f"read {args.bandwidth['read_bytes_per_s'] / 1e9:.2f} GB/s")

    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    models = previous.get("models", {}) if isinstance(previous.get("models"), dict) else {}
    for name in args.models:
        loaded = random_model(device, dtype) if name == "random-67m" else real_model(device, dtype, args.real_model_dir)
        if loaded is None:
            continue
        model, batch = loaded
        models[name] = {"bandwidth": args.bandwidth, **bench_model(name, model, batch, clock, args)}
        if name == "random-67m":
            models[name]["long_context"] = l0_vs_generate(model, batch, clock, args.long_batch_size,
                                                          args.new_tokens, max(3, args.repeats // 2),
                                                          prompt_length=args.long_prompt_length)
        del model

    runs = [run for entry in models.values() for run in entry.get("eglr", [])]
    ratios = [run for entry in models.values() for run in entry.get("l0_vs_generate", [])]
    ratios += [entry["long_context"] for entry in models.values() if "long_context" in entry]
    result = {
        "measured_over_per_row_prediction": max((r["measured_over_per_row_prediction"] for r in runs), default=None),
        "measured_over_per_row_prediction_by_batch": {
            str(size): max(r["measured_over_per_row_prediction"] for r in runs if r["batch_size"] == size)
            for size in sorted({r["batch_size"] for r in runs})},
        "l0_roofline_fraction": min((e["l0_roofline_fraction"] for e in models.values()
                                     if "l0_roofline_fraction" in e), default=None),
        "l0_time_ratio_vs_generate": max((r["l0_time_ratio_vs_generate"] for r in ratios), default=None),
        "tokens_equal_hf": all(r["tokens_equal_hf"] for r in ratios),
        "targets": {"measured_over_per_row_prediction": TARGETS, "l0_roofline_fraction": 0.8,
                    "l0_time_ratio_vs_generate": 1.0},
        "timing_basis": (f"process CPU time, {args.threads} thread(s)" if device.type == "cpu"
                         else "wall time, GPU synchronised") + "; ratios are medians of within-repeat ratios",
        "models": models,
        "environment": {
            "torch": torch.__version__, "transformers": transformers.__version__, "threads": args.threads,
            "machine": platform.machine(), "cpus": os.cpu_count(), "device": str(device), "dtype": args.dtype,
            **({"gpu": torch.cuda.get_device_name(device)} if device.type == "cuda" else {}),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    print(f"worst measured / per-row prediction {result['measured_over_per_row_prediction']}, "
          f"L=0 roofline fraction {result['l0_roofline_fraction']}, "
          f"worst L=0 / generate {result['l0_time_ratio_vs_generate']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
