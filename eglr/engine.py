"""EGLR decoding: the generation loop.

:func:`generate` is a plain decoding loop:

1. Set up: check the inputs, resolve stop and pad tokens, allocate the KV cache
   and the per-row statistics.
2. Prefill: run the prompt. With EGLR the last prompt token is held back, so
   that the first generated token is decided by an ordinary one-token step
   (the gate applies to it like to any other).
3. Steps: run the model on the new position; if EGLR can gate (L > 0 and
   ``k_max`` > 0) hand the step to :func:`eglr.step.eglr_step` (gate,
   re-applications, convergence, KV policy: the whole procedure, in one module);
   choose the token (greedy at ``temperature`` 0, else sampled per row).
4. A row that emits an end-of-sequence token leaves the batch, with its rows of
   the KV cache: later steps run on the rows still decoding only (a static
   batch otherwise pays for its longest response on every row). Each row's
   computation does not depend on the rest of the batch, so its tokens do not
   change (tests check a batched row against the same row alone).

With L = 0 or ``k_max`` = 0 nothing can gate and the loop is a plain
greedy/sampling decoder with no hooks at all (token for token what
``model.generate(do_sample=False)`` produces at temperature 0).

The KV cache is :func:`eglr.cache.preallocated_cache`: room for prompt +
``max_new_tokens`` positions is allocated once and each position is written in
place, where transformers' dynamic cache concatenates (copies) every layer's
cache at every step. Attention sees the same values in the same shapes, so the
tokens are the same; the copy, which grows with context and batch, is gone.
"""
from __future__ import annotations

import inspect
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from eglr.cache import preallocated_cache
from eglr.logits import OutputHead, check_head_matches, decoder_layers
from eglr.sampling import choose_tokens, draw_uniforms, row_generators, row_seeds, validate_sampling
from eglr.step import EGLRConfig, StepResult, eglr_step, entropy
from eglr.top_layers import TopLayers

__all__ = ["EGLRConfig", "GenerationOutput", "generate", "num_decoder_layers"]

@dataclass
class GenerationOutput:
    """Generated tokens and per-row statistics.

    ``sequences`` holds the generated tokens only, [batch, steps run], padded with
    ``pad_token_id`` after a row stopped. Per row: ``num_tokens`` counts its
    generated tokens including its EOS token; ``num_gated`` its gated steps;
    ``num_reapplications`` its re-applications of the top layers in total;
    ``num_converged`` its gated steps whose convergence test passed within
    ``k_max`` re-applications; ``reapplication_histogram[i]`` how many of its
    gated steps stopped after i + 1 re-applications (``k_max`` entries);
    ``mean_stop_kl`` the mean over its gated steps of KL(p_k || p_{k-1}) at the
    last re-application (None without gated steps); ``finish_reasons`` is
    ``"eos"`` or ``"length"``; ``sum_logprob`` is the sum over its tokens of
    log softmax(z_final) at the chosen token (temperature 1).
    ``reapplication_passes`` counts the re-applications run on the batch, each on
    the rows still running at that point (the cost is in the per-row counts).
    ``step_entropies`` (with ``return_entropies=True``): per row, the entropy of
    the normal pass's next-token distribution at each of its steps, the ones the
    gate compares with tau.
    """

    sequences: torch.Tensor
    num_tokens: list[int]
    num_gated: list[int]
    num_reapplications: list[int]
    num_converged: list[int]
    reapplication_histogram: list[list[int]]
    mean_stop_kl: list[float | None]
    finish_reasons: list[str]
    sum_logprob: list[float]
    reapplication_passes: int = 0
    step_entropies: list[list[float]] | None = None


def num_decoder_layers(model: PreTrainedModel) -> int:
    """How many decoder layers ``model`` has (the largest valid ``layer_span``)."""
    return len(decoder_layers(model))


def _cache_argument(model: PreTrainedModel) -> str:
    """transformers 5.x calls the KV cache argument ``cache`` (earlier: ``past_key_values``)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _token_ids(value: int | Sequence[int] | None, name: str) -> list[int]:
    if value is None:
        return []
    values = [value] if isinstance(value, int) else list(value)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ValueError(f"{name} must be a non-negative int or a list of them, got {value!r}")
    return values


def _check_inputs(
    input_ids: torch.Tensor, attention_mask: torch.Tensor | None, max_new_tokens: int
) -> torch.Tensor:
    if (
        not isinstance(input_ids, torch.Tensor)
        or input_ids.dim() != 2
        or input_ids.shape[1] == 0
        or input_ids.dtype.is_floating_point
    ):
        raise ValueError(f"input_ids must be an integer [batch, length] tensor with length >= 1, got {input_ids!r}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    if attention_mask is None:
        return torch.ones_like(input_ids)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} differs from input_ids {tuple(input_ids.shape)}"
        )
    mask = attention_mask.long()
    if not bool((mask[:, -1] == 1).all()) or not bool((mask[:, 1:] >= mask[:, :-1]).all()):
        raise ValueError("attention_mask must be left-padded (zeros, then ones) with a real last token in every row")
    return mask


@torch.inference_mode()
def generate(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    eglr: EGLRConfig,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int,
    seed: int | Sequence[int] | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    return_entropies: bool = False,
) -> GenerationOutput:
    """Decode up to ``max_new_tokens`` tokens per row of a left-padded batch with EGLR.

    ``eos_token_id`` (an int or several; ``[]`` never stops) and ``pad_token_id``
    default to the model's generation config, where :func:`eglr.models.load_model`
    puts the stop and pad tokens it resolves. ``seed`` is an int (rows get ``seed + row``) or one
    int per row; each row samples from its own generator, so its tokens do not
    depend on the rest of the batch.
    """
    # 1. set up
    if not isinstance(eglr, EGLRConfig):
        raise ValueError(f"eglr must be an EGLRConfig, got {eglr!r}")
    eglr.validate_for_model(num_decoder_layers(model))
    validate_sampling(temperature, top_p)
    attention_mask = _check_inputs(input_ids, attention_mask, max_new_tokens)

    generation_config = model.generation_config
    eos_ids = _token_ids(eos_token_id if eos_token_id is not None else generation_config.eos_token_id, "eos_token_id")
    if pad_token_id is None:
        pad_token_id = generation_config.pad_token_id
    if pad_token_id is None:
        raise ValueError("no pad_token_id: pass one, or set the model's generation config (eglr.models.load_model "
                         "and eglr.models.resolve_special_tokens do)")
    if isinstance(pad_token_id, bool) or not isinstance(pad_token_id, int) or pad_token_id < 0:
        raise ValueError(f"pad_token_id must be a non-negative int, got {pad_token_id!r}")

    device = model.device
    input_ids = input_ids.to(device)
    attention_mask = attention_mask.to(device)
    batch_size, prompt_length = input_ids.shape
    full_mask = torch.cat([attention_mask, attention_mask.new_ones(batch_size, max_new_tokens)], dim=1)
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    eos = torch.tensor(eos_ids, dtype=torch.long, device=device)
    seeds = row_seeds(seed, batch_size) if seed is not None or temperature > 0 else None
    generators = row_generators(seeds, device) if temperature > 0 else None

    cache = preallocated_cache(model.config, capacity=prompt_length + max_new_tokens)
    cache_argument = _cache_argument(model)

    def forward(tokens: torch.Tensor, kv_length: int, token_positions: torch.Tensor) -> torch.Tensor:
        outputs = model(
            input_ids=tokens,
            attention_mask=full_mask[:, :kv_length],
            position_ids=token_positions,
            use_cache=True,
            logits_to_keep=1,
            **{cache_argument: cache},
        )
        return outputs.logits[:, -1]

    generated = torch.full((batch_size, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
    hit_eos = torch.zeros(batch_size, dtype=torch.bool, device=device)
    num_tokens = torch.zeros(batch_size, dtype=torch.long, device=device)
    sum_logprob = torch.zeros(batch_size, dtype=torch.float64, device=device)
    stats = _EGLRStatistics(batch_size, eglr.k_max, device)
    running = torch.arange(batch_size, device=device)  # the rows still decoding, as indices into the batch
    entropies = torch.full((batch_size, max_new_tokens), float("nan"), device=device) if return_entropies else None
    steps_run = 0
    hooks = TopLayers(model, cache, eglr.layer_span) if eglr.can_gate else nullcontext()
    head = OutputHead.of(model) if eglr.can_gate else None
    with hooks as top:
        # 2. prefill
        if top is None:
            step_tokens, step_positions = input_ids, positions
        else:
            if prompt_length > 1:
                forward(input_ids[:, :-1], prompt_length - 1, positions[:, :-1])
                top.end_step()
            step_tokens, step_positions = input_ids[:, -1:], positions[:, -1:]

        # 3. decoding steps, on the rows still running
        for step in range(max_new_tokens):
            logits = forward(step_tokens, prompt_length + step, step_positions)
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            if entropies is not None:
                entropies[running, step] = entropy(log_probs)
            if top is not None:
                if step == 0:
                    check_head_matches(head, top.hidden, logits)
                result = eglr_step(eglr, top, head, logits, log_probs)
                stats.add(result, running)
                logits, log_probs = result.logits, result.log_probs
            uniforms = draw_uniforms([generators[row] for row in running.tolist()], device) if generators else None
            tokens = choose_tokens(logits, temperature, top_p, uniforms)
            sum_logprob[running] += log_probs.gather(-1, tokens[:, None]).squeeze(-1).double()
            num_tokens[running] += 1
            generated[running, step] = tokens
            steps_run = step + 1
            is_eos = torch.isin(tokens, eos)
            if bool(is_eos.any()):
                # 4. rows that ended leave the batch (their cache rows too), so later steps cost only what remains
                hit_eos[running[is_eos]] = True
                keep = ~is_eos
                if not bool(keep.any()):
                    break
                kept = keep.nonzero().squeeze(1)
                running, tokens, step_positions = running[kept], tokens[kept], step_positions[kept]
                full_mask = full_mask[kept]
                cache.batch_select_indices(kept)
            step_tokens = tokens[:, None]
            step_positions = step_positions[:, -1:] + 1

    return GenerationOutput(
        sequences=generated[:, :steps_run],
        num_tokens=num_tokens.tolist(),
        finish_reasons=["eos" if stopped else "length" for stopped in hit_eos.tolist()],
        sum_logprob=sum_logprob.tolist(),
        **stats.as_lists(),
        step_entropies=None if entropies is None else [
            row[:count] for row, count in zip(entropies.tolist(), num_tokens.tolist())],
    )


class _EGLRStatistics:
    """Per-row totals of what :func:`eglr.step.eglr_step` did over a generation."""

    def __init__(self, batch_size: int, k_max: int, device: torch.device) -> None:
        self.gated = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.reapplications = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.converged = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.histogram = torch.zeros(batch_size, max(k_max, 1), dtype=torch.long, device=device)
        self.stop_kl = torch.zeros(batch_size, dtype=torch.float64, device=device)
        self.k_max = k_max
        self.passes = 0

    def add(self, step: StepResult, running: torch.Tensor) -> None:
        """Add one step's results; ``running`` maps the step's rows to the batch's."""
        if not step.passes:
            return
        gated = step.gated.nonzero().squeeze(1)
        rows = running[gated]
        reapplications = step.reapplications[gated]
        self.gated[rows] += 1
        self.reapplications[rows] += reapplications
        self.converged[rows] += step.converged[gated].long()
        self.histogram[rows, reapplications - 1] += 1
        self.stop_kl[rows] += step.stop_kl[gated].double()
        self.passes += step.passes

    def as_lists(self) -> dict[str, object]:
        gated = self.gated.tolist()
        return {
            "num_gated": gated,
            "num_reapplications": self.reapplications.tolist(),
            "num_converged": self.converged.tolist(),
            "reapplication_histogram": [row[: self.k_max] for row in self.histogram.tolist()],
            "mean_stop_kl": [total / count if count else None for total, count in zip(self.stop_kl.tolist(), gated)],
            "reapplication_passes": self.passes,
        }
