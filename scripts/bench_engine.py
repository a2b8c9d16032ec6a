"""Benchmark the EGLR engine on CPU against transformers' own greedy ``generate``.

A randomly initialised ~70M-parameter Llama-architecture model (no download, no
tokenizer: prompts are random token ids) decodes ``--new-tokens`` tokens for
batches of 1 and 8 rows. Its output projection is re-drawn with a larger standard
deviation so that next-token entropies vary from step to step as a trained
model's do (with the default init every step sits near log V and "the 10% most
uncertain steps" is a coin toss). Per batch size it reports

- ``generate_tokens_per_s`` / ``eglr_l0_tokens_per_s``: generated tokens per second
  of ``model.generate(do_sample=False)`` and of ``eglr.generate`` with L = 0, and
  ``l0_time_ratio_vs_generate`` (our time / HF's, same run; target <= 0.9);
- ``gated_fraction`` and ``overhead_measured``: EGLR time / L = 0 time - 1 with
  L = 4, k_max = 4 and a tau calibrated so that about 10% of steps gate;
- ``overhead_flops``: the same overhead predicted from the extra top-L layer and
  head passes actually executed (``batch_iterations``, plus the one head pass with
  which the engine checks its logits against the model's), in multiply-adds per
  token, over the decode steps' multiply-adds (prefill is shared by both runs and
  left out).
  Target: ``(1 + overhead_measured) / (1 + overhead_flops) <= 1.05``, i.e. the
  recursion costs what its arithmetic costs and no more.

What a re-application costs: L decoder layers plus the final norm and the output
projection. For small models the output projection dominates: here the
32000 x 512 head is ~16M multiply-adds per token, more than the four top layers
together (~13M). Per iteration the engine does no other work proportional to the
model: the attention masks, rotary embeddings and layer arguments recorded during
the step's forward are reused, and the KV cache (:mod:`eglr.cache`) writes each
position in place into preallocated room, so a re-application rolls a layer back
by restoring its length and overwrites one slot; nothing is concatenated or
copied beyond the one position of rows that sit an iteration out.

The preallocated cache is also the one thing the L = 0 path does differently from
``model.generate``, whose dynamic cache concatenates every layer's keys/values at
every step (a copy of the whole cache per token). That copy grows with the
context and the batch, so ``long_context`` repeats the L = 0 comparison with
``--long-prompt-length`` prompt tokens at batch 8.

As a less noisy check of the same claim, ``iteration_over_step_measured`` times one
re-application (top layers + head) against one decoding step, back to back at
the same position many times, next to ``iteration_over_step_flops``.

Each repeat runs generate, L = 0 and EGLR back to back; a ratio is the median
over repeats of the ratio within a repeat (throughputs use median times). The
ratios use process CPU time: the runs are single-threaded (``--threads 1``) and
the machine is shared, so wall time mostly measures the other tenants;
wall-clock ratios are reported alongside. ``--device cuda --dtype bfloat16`` runs
the same comparisons on a GPU, timed in wall-clock time with the GPU synchronised
before and after each run (``make gpu-check``).

Two facts to read the numbers by. Apart from the cache, the L = 0 path runs
exactly the forward passes ``model.generate`` runs (same masks and
``logits_to_keep``), and on a CPU with short contexts the matrix products of those
passes are ~75% of the time and the per-layer dispatch of the model's own modules
most of the rest, so there its ratio to ``generate`` sits near 1; it drops where
the cache copy matters (long contexts, larger batches). And each re-application
runs on the whole batch (rows not gated just discard the result), so at batch 8
on a CPU, where compute grows with rows, the overhead grows with the chance that
*any* row is gated; ``overhead_flops`` counts exactly those whole-batch passes.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
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
MODEL = dict(
    vocab_size=32000,
    hidden_size=512,
    intermediate_size=1536,
    num_hidden_layers=10,
    num_attention_heads=8,
    num_key_value_heads=8,
    max_position_embeddings=2048,
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=None,
    pad_token_id=0,
)
LAYER_SPAN = 4
K_MAX = 4
TARGET_GATED_FRACTION = 0.10
HEAD_STD = 3.0 / MODEL["hidden_size"] ** 0.5


def build_model(device: str = "cpu", dtype: torch.dtype = torch.float32) -> LlamaForCausalLM:
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**MODEL)).eval()
    with torch.no_grad():
        model.get_output_embeddings().weight.normal_(0.0, HEAD_STD)
    model = model.to(device=device, dtype=dtype)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


def random_batch(
    batch_size: int, prompt_length: int, seed: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded random prompts of lengths between prompt_length / 2 and prompt_length."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(prompt_length // 2, prompt_length + 1, (batch_size,), generator=generator)
    lengths[0] = prompt_length
    input_ids = torch.zeros((batch_size, prompt_length), dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, length in enumerate(lengths.tolist()):
        input_ids[row, prompt_length - length:] = torch.randint(3, MODEL["vocab_size"], (length,), generator=generator)
        attention_mask[row, prompt_length - length:] = 1
    return input_ids.to(device), attention_mask.to(device)


@torch.inference_mode()
def step_entropies(model, input_ids, attention_mask, new_tokens: int) -> torch.Tensor:
    """Next-token entropies of every step of greedy L = 0 decoding."""
    tokens = generate(model, input_ids, attention_mask, eglr=EGLRConfig(), max_new_tokens=new_tokens).sequences
    full_ids = torch.cat([input_ids, tokens], dim=1)
    full_mask = torch.cat([attention_mask, torch.ones_like(tokens)], dim=1)
    positions = (full_mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(full_ids, attention_mask=full_mask, position_ids=positions).logits
    step_logits = logits[:, input_ids.shape[1] - 1:-1].float()
    return entropy(step_logits.log_softmax(-1)).flatten()


def calibrate_tau(model, input_ids, attention_mask, new_tokens: int, rounds: int = 5) -> float:
    """A tau that gates about TARGET_GATED_FRACTION of EGLR's steps.

    Recursion changes the trajectory and hence the entropies, so the matching
    quantile of the L = 0 entropies is only a start: bisect on the quantile level
    using EGLR's observed gated fraction and keep the closest tau.
    """
    entropies = step_entropies(model, input_ids, attention_mask, new_tokens)
    low, high = 0.5, 0.999
    quantile = 1 - TARGET_GATED_FRACTION
    best_tau, best_miss = math.inf, math.inf
    for _ in range(rounds):
        tau = torch.quantile(entropies, quantile).item()
        output = generate(model, input_ids, attention_mask, max_new_tokens=new_tokens,
                          eglr=EGLRConfig(layer_span=LAYER_SPAN, tau=tau, k_max=K_MAX))
        miss = sum(output.num_gated) / sum(output.num_tokens) - TARGET_GATED_FRACTION
        if abs(miss) < best_miss:
            best_tau, best_miss = tau, abs(miss)
        if abs(miss) <= 0.02:
            break
        low, high = (quantile, high) if miss > 0 else (low, quantile)
        quantile = (low + high) / 2
    return best_tau


def multiply_adds(model, context: float) -> dict[str, float]:
    """Multiply-adds per token: one decoder layer at a given context length, and the head."""
    layer = decoder_layers(model)[0]
    layer_weights = sum(p.numel() for name, p in layer.named_parameters() if p.dim() == 2)
    attention = 2 * context * model.config.num_attention_heads * (model.config.hidden_size // model.config.num_attention_heads)
    head = model.get_output_embeddings().weight.numel()
    return {"layer": layer_weights + attention, "head": head}


@torch.inference_mode()
def iteration_over_step(model, input_ids, attention_mask, repeats: int = 30) -> float:
    """Median time of one re-application (top layers + head) over that of one decoding step.

    Both are timed back to back at the same position and context many times (the
    cache is cropped after each round), which is far less noisy than whole runs.
    """
    cache = preallocated_cache(model.config, capacity=input_ids.shape[1])
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    head = OutputHead.of(model)
    ratios = []
    clock = _clock(model)
    with TopLayers(model, cache, LAYER_SPAN) as recursion:
        model(input_ids=input_ids[:, :-1], attention_mask=attention_mask[:, :-1], position_ids=positions[:, :-1],
              cache=cache, use_cache=True)
        recursion.end_step()
        for _ in range(repeats):
            step_seconds = timed(lambda: model(input_ids=input_ids[:, -1:], attention_mask=attention_mask,
                                               position_ids=positions[:, -1:], cache=cache, use_cache=True,
                                               logits_to_keep=1))[clock]
            iteration_seconds = timed(lambda: head(recursion.reapply(recursion.hidden)))[clock]
            ratios.append(iteration_seconds / step_seconds)
            recursion.end_step()
            for layer in cache.layers:
                layer.crop(-1)
    return statistics.median(ratios)


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call, queued GPU work included."""
    _synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    _synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def _clock(model) -> int:
    """Which of ``timed``'s figures to compare: process CPU time on a CPU, wall time on an accelerator."""
    return 1 if model.device.type == "cpu" else 0


def paired(times: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """Median over repeats of the ratio of two runs made back to back (they share the machine's mood)."""
    return statistics.median(a / b for a, b in zip(times[numerator], times[denominator]))


def runners(model, input_ids, attention_mask, new_tokens: int):
    """``model.generate`` (greedy, exactly ``new_tokens``) and ``eglr.generate`` under a given config."""

    def hf_generate():
        with torch.inference_mode():
            return model.generate(input_ids, attention_mask=attention_mask, do_sample=False,
                                  max_new_tokens=new_tokens, min_new_tokens=new_tokens)

    def ours(config: EGLRConfig):
        return generate(model, input_ids, attention_mask, eglr=config, max_new_tokens=new_tokens)

    return hf_generate, ours


def bench_batch(model, batch_size: int, prompt_length: int, new_tokens: int, repeats: int) -> dict[str, object]:
    input_ids, attention_mask = random_batch(batch_size, prompt_length, seed=batch_size, device=model.device)
    tau = calibrate_tau(model, input_ids, attention_mask, new_tokens)
    eglr_config = EGLRConfig(layer_span=LAYER_SPAN, tau=tau, k_max=K_MAX)
    hf_generate, ours = runners(model, input_ids, attention_mask, new_tokens)

    hf_tokens = hf_generate()[:, prompt_length:]
    l0_output = ours(EGLRConfig())
    eglr_output = ours(eglr_config)
    runs = {"generate": hf_generate, "l0": lambda: ours(EGLRConfig()), "eglr": lambda: ours(eglr_config)}
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            wall_seconds, cpu_seconds = timed(run)
            wall[name].append(wall_seconds)
            cpu[name].append(cpu_seconds)
    basis = cpu if _clock(model) == 1 else wall
    median = {name: statistics.median(values) for name, values in basis.items()}
    median_cpu = {name: statistics.median(values) for name, values in cpu.items()}
    median_wall = {name: statistics.median(values) for name, values in wall.items()}

    steps = eglr_output.sequences.shape[1]
    costs = multiply_adds(model, context=prompt_length + steps / 2)
    num_layers = model.config.num_hidden_layers
    step_cost = num_layers * costs["layer"] + costs["head"]
    iteration_cost = LAYER_SPAN * costs["layer"] + costs["head"]
    context_ids, context_mask = random_batch(batch_size, prompt_length + steps // 2, seed=batch_size + 1,
                                             device=model.device)
    iteration_ratio = iteration_over_step(model, context_ids, context_mask)
    # One more head pass per call: the engine checks its head against the model's logits once.
    extra_cost = eglr_output.reapplication_passes * iteration_cost + costs["head"]
    overhead_flops = extra_cost / (steps * step_cost)
    overhead_measured = paired(basis, "eglr", "l0") - 1
    generated = batch_size * new_tokens
    return {
        "batch_size": batch_size,
        "prompt_length": prompt_length,
        "new_tokens": new_tokens,
        "tokens_equal_hf": bool(torch.equal(hf_tokens, l0_output.sequences)),
        "generate_tokens_per_s": generated / median["generate"],
        "eglr_l0_tokens_per_s": generated / median["l0"],
        "eglr_tokens_per_s": generated / median["eglr"],
        "l0_time_ratio_vs_generate": paired(basis, "l0", "generate"),
        "l0_wall_time_ratio_vs_generate": paired(wall, "l0", "generate"),
        "tau": tau,
        "gated_fraction": sum(eglr_output.num_gated) / sum(eglr_output.num_tokens),
        "iterations_per_gated_step": sum(eglr_output.num_reapplications) / max(1, sum(eglr_output.num_gated)),
        "reapplication_passes": eglr_output.reapplication_passes,
        "overhead_measured": overhead_measured,
        "overhead_measured_wall": paired(wall, "eglr", "l0") - 1,
        "overhead_flops": overhead_flops,
        "measured_over_flops": (1 + overhead_measured) / (1 + overhead_flops),
        "head_share_of_iteration_flops": costs["head"] / iteration_cost,
        "iteration_over_step_measured": iteration_ratio,
        "iteration_over_step_flops": iteration_cost / step_cost,
        "median_cpu_seconds": median_cpu,
        "median_wall_seconds": median_wall,
        "cpu_seconds": cpu,
        "wall_seconds": wall,
    }


def bench_long_context(model, batch_size: int, prompt_length: int, new_tokens: int, repeats: int) -> dict[str, object]:
    """L = 0 against ``model.generate`` only, with a long prompt: where the dynamic cache's copies add up."""
    input_ids, attention_mask = random_batch(batch_size, prompt_length, seed=batch_size + prompt_length,
                                             device=model.device)
    hf_generate, ours = runners(model, input_ids, attention_mask, new_tokens)
    tokens_equal = bool(torch.equal(hf_generate()[:, prompt_length:], ours(EGLRConfig()).sequences))
    seconds: dict[str, list[float]] = {"generate": [], "l0": []}
    for _ in range(repeats):
        for name, run in (("generate", hf_generate), ("l0", lambda: ours(EGLRConfig()))):
            seconds[name].append(timed(run)[_clock(model)])
    generated = batch_size * new_tokens
    return {
        "batch_size": batch_size,
        "prompt_length": prompt_length,
        "new_tokens": new_tokens,
        "tokens_equal_hf": tokens_equal,
        "generate_tokens_per_s": generated / statistics.median(seconds["generate"]),
        "eglr_l0_tokens_per_s": generated / statistics.median(seconds["l0"]),
        "l0_time_ratio_vs_generate": paired(seconds, "l0", "generate"),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--prompt-length", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--long-prompt-length", type=int, default=1024)
    parser.add_argument("--long-batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="e.g. cuda; timings then use wall time")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--out", type=Path, default=None,
                        help="default results/bench/engine.json on CPU, engine_<device>_<dtype>.json elsewhere")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.out is None:
        name = "engine.json" if device.type == "cpu" and args.dtype == "float32" else f"engine_{device.type}_{args.dtype}.json"
        args.out = REPO_ROOT / "results" / "bench" / name

    torch.set_num_threads(args.threads)
    model = build_model(device, getattr(torch, args.dtype))
    parameters = sum(p.numel() for p in model.parameters())
    runs = [bench_batch(model, batch_size, args.prompt_length, args.new_tokens, args.repeats)
            for batch_size in args.batch_sizes]
    long_context = bench_long_context(model, args.long_batch_size, args.long_prompt_length, args.new_tokens,
                                      repeats=max(3, args.repeats // 2))
    first = runs[0]
    result = {
        **{key: first[key] for key in ("generate_tokens_per_s", "eglr_l0_tokens_per_s", "l0_time_ratio_vs_generate",
                                       "gated_fraction", "overhead_measured", "overhead_flops", "measured_over_flops")},
        "headline_batch_size": first["batch_size"],
        "timing_basis": (
            f"process CPU time, {args.threads} thread(s)" if device.type == "cpu" else "wall time, GPU synchronised"
        ) + "; ratios are medians of within-repeat ratios",
        "runs": runs,
        "long_context": long_context,
        "model": {"architecture": "LlamaForCausalLM (random init)", "parameters": parameters, **MODEL},
        "eglr": {"layer_span": LAYER_SPAN, "k_max": K_MAX, "target_gated_fraction": TARGET_GATED_FRACTION},
        "recursion_cost_note": (
            "A re-application costs L decoder layers + final norm + output projection. For this model the head "
            f"({model.get_output_embeddings().weight.numel() / 1e6:.1f}M multiply-adds per token) costs more than the "
            f"{LAYER_SPAN} top layers; masks, rotary embeddings and layer arguments are reused from the step's "
            "forward and the KV cache writes in place, so a re-application overwrites one position and nothing else "
            "scales with the model."
        ),
        "environment": {
            "torch": torch.__version__, "transformers": transformers.__version__, "threads": args.threads,
            "repeats": args.repeats, "machine": platform.machine(), "device": str(device), "dtype": args.dtype,
            **({"gpu": torch.cuda.get_device_name(device)} if device.type == "cuda" else {}),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for run in runs:
        print(f"batch {run['batch_size']}: generate {run['generate_tokens_per_s']:.1f} tok/s, "
              f"L=0 {run['eglr_l0_tokens_per_s']:.1f} tok/s (ratio {run['l0_time_ratio_vs_generate']:.3f}), "
              f"gated {run['gated_fraction']:.3f}, overhead measured {run['overhead_measured']:.3f} "
              f"vs flops {run['overhead_flops']:.3f} (ratio {run['measured_over_flops']:.3f})")
    print(f"long context (batch {long_context['batch_size']}, prompt {long_context['prompt_length']}): "
          f"L=0 / generate time ratio {long_context['l0_time_ratio_vs_generate']:.3f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
