"""EGLR decoding: configuration and the generation loop.

At each decoding step of each row:

1. Run the model on the new position; keep the last decoder layer's output
   ``h`` (pre-norm) and the model's own next-token logits ``z``.
2. If ``layer_span`` L > 0 and the entropy of softmax(z) exceeds ``tau``, the
   step is *gated*: up to ``k_max`` times, re-apply the top L decoder layers to
   ``h`` at the same position (attending to the KV cache) and recompute ``z``
   from the new ``h``; stop early once the distribution has converged
   (``criterion``: KL to the previous iterate below ``eps``, or unchanged argmax).
3. Choose the token from the final logits: greedy at ``temperature`` 0, else
   sampled from softmax(z / temperature) with nucleus ``top_p``.

The gate also decides the first generated token (at the last prompt position).
To make that position an ordinary one-token step, the gated path runs the prompt
without its last token first; with L = 0 or ``k_max`` = 0 nothing can gate and
the loop is a plain greedy/sampling decoder with no hooks at all (token for token
what ``model.generate(do_sample=False)`` produces at temperature 0).

In a batch, gating is per row: the top layers are re-applied to the whole batch,
but only gated, not yet converged rows take the new hidden state, logits and
keys/values; the others keep theirs (see :mod:`eglr.recursion`).

The KV cache is :func:`eglr.cache.preallocated_cache`: room for prompt +
``max_new_tokens`` positions is allocated once and each position is written in
place, where transformers' dynamic cache concatenates (copies) every layer's
cache at every step. Attention sees the same values in the same shapes, so the
tokens are the same; the copy, which grows with context and batch, is gone.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
from transformers import PreTrainedModel

from eglr.cache import preallocated_cache
from eglr.logits import OutputHead, check_head_matches, decoder_layers, entropy, kl_divergence
from eglr.recursion import KV_POLICIES, TopLayerRecursion
from eglr.sampling import choose_tokens, draw_uniforms, row_generators, row_seeds, validate_sampling

CRITERIA = ("kl", "argmax")


@dataclass(frozen=True)
class EGLRConfig:
    """How (and whether) EGLR recurses at uncertain steps.

    - ``layer_span`` (L): number of top decoder layers re-applied; 0 disables EGLR.
    - ``tau`` = 1.0 nats: entropy above which a step is gated. An entropy of 1 nat
      is that of a uniform choice among e ~ 2.7 tokens; instruction-tuned models
      decoding math are far more confident than that on most tokens, so the gate
      fires on a small fraction of steps (the genuinely open choices) and the
      overhead stays small. ``+inf`` never gates, ``-inf`` gates every step.
    - ``k_max`` = 4: at most this many re-applications per gated step, which bounds
      the cost of a gated step to 4 x (L layers + head) on top of a full forward.
    - ``eps`` = 1e-3 nats: KL below which two successive distributions count as
      converged. By Pinsker's inequality their total-variation distance is then
      below sqrt(eps / 2) ~ 0.022, i.e. sampling from either is practically the same.
    - ``criterion``: ``"kl"`` (KL(p_k || p_{k-1}) < eps) or ``"argmax"`` (unchanged top token).
    - ``kv_policy``: ``"overwrite"`` keeps the last iterate's keys/values for the
      gated position in the top-L layers' cache; ``"keep_first"`` keeps the first
      pass's, so re-applications only change the token choice.
    """

    layer_span: int = 0
    tau: float = 1.0
    k_max: int = 4
    eps: float = 1e-3
    criterion: str = "kl"
    kv_policy: str = "overwrite"

    def __post_init__(self) -> None:
        for name in ("layer_span", "k_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if isinstance(self.tau, bool) or not isinstance(self.tau, (int, float)) or math.isnan(self.tau):
            raise ValueError(f"tau must be a number (inf allowed, not NaN), got {self.tau!r}")
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)) or not self.eps >= 0:
            raise ValueError(f"eps must be a number >= 0, got {self.eps!r}")
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {self.criterion!r}")
        if self.kv_policy not in KV_POLICIES:
            raise ValueError(f"kv_policy must be one of {KV_POLICIES}, got {self.kv_policy!r}")

    @property
    def can_gate(self) -> bool:
        """Whether any step can be re-applied at all (L > 0 and k_max > 0)."""
        return self.layer_span > 0 and self.k_max > 0

    def validate_for_model(self, num_layers: int) -> None:
        """Raise ``ValueError`` if ``layer_span`` exceeds a model's ``num_layers`` decoder layers."""
        if self.layer_span > num_layers:
            raise ValueError(f"layer_span={self.layer_span} exceeds the model's {num_layers} decoder layers")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class GenerationOutput:
    """Generated tokens and per-row statistics.

    ``sequences`` holds the generated tokens only, [batch, steps run], padded with
    ``pad_token_id`` after a row stopped. ``num_tokens`` counts a row's generated
    tokens including its EOS token; ``num_gated`` its gated steps;
    ``num_iterations`` its re-applications of the top layers in total;
    ``finish_reasons`` is ``"eos"`` or ``"length"``; ``sum_logprob`` is the sum over
    its tokens of log softmax(z_final) at the chosen token (temperature 1).
    ``batch_iterations`` counts the re-applications actually executed: each runs
    on the whole batch, so it (not the per-row counts) measures the compute spent.
    """

    sequences: torch.Tensor
    num_tokens: list[int]
    num_gated: list[int]
    num_iterations: list[int]
    finish_reasons: list[str]
    sum_logprob: list[float]
    batch_iterations: int = 0


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
) -> GenerationOutput:
    """Decode up to ``max_new_tokens`` tokens per row of a left-padded batch with EGLR.

    ``eos_token_id`` (an int or several) and ``pad_token_id`` default to the
    model's generation config. ``seed`` is an int (rows get ``seed + row``) or one
    int per row; each row samples from its own generator, so its tokens do not
    depend on the rest of the batch.
    """
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
        pad_token_id = eos_ids[0] if eos_ids else 0
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
    finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
    hit_eos = torch.zeros(batch_size, dtype=torch.bool, device=device)
    num_tokens = torch.zeros(batch_size, dtype=torch.long, device=device)
    num_gated = torch.zeros(batch_size, dtype=torch.long, device=device)
    num_iterations = torch.zeros(batch_size, dtype=torch.long, device=device)
    sum_logprob = torch.zeros(batch_size, dtype=torch.float64, device=device)
    steps_run = batch_iterations = 0
    hooks = TopLayerRecursion(model, cache, eglr.layer_span, eglr.kv_policy) if eglr.can_gate else nullcontext()
    head = OutputHead.of(model) if eglr.can_gate else None
    with hooks as recursion:
        if recursion is None:
            step_tokens, step_positions = input_ids, positions
        else:
            if prompt_length > 1:
                forward(input_ids[:, :-1], prompt_length - 1, positions[:, :-1])
                recursion.end_step()
            step_tokens, step_positions = input_ids[:, -1:], positions[:, -1:]

        for step in range(max_new_tokens):
            logits = forward(step_tokens, prompt_length + step, step_positions)
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            if recursion is not None:
                if step == 0:
                    check_head_matches(head, recursion.hidden, logits)
                logits, log_probs, gated, iterations, passes = _recurse(
                    head, recursion, eglr, logits, log_probs, ~finished
                )
                num_gated += gated
                num_iterations += iterations
                batch_iterations += passes
            uniforms = draw_uniforms(generators, device) if generators is not None else None
            tokens = choose_tokens(logits, temperature, top_p, uniforms)
            tokens = torch.where(finished, pad_token_id, tokens)
            chosen_logprob = log_probs.gather(-1, tokens[:, None]).squeeze(-1)
            sum_logprob += torch.where(finished, 0.0, chosen_logprob.double())
            num_tokens += ~finished
            generated[:, step] = tokens
            steps_run = step + 1
            is_eos = torch.isin(tokens, eos) & ~finished
            hit_eos |= is_eos
            finished |= is_eos
            if bool(finished.all()):
                break
            step_tokens = tokens[:, None]
            step_positions = step_positions[:, -1:] + 1

    return GenerationOutput(
        sequences=generated[:, :steps_run],
        num_tokens=num_tokens.tolist(),
        num_gated=num_gated.tolist(),
        num_iterations=num_iterations.tolist(),
        finish_reasons=["eos" if stopped else "length" for stopped in hit_eos.tolist()],
        sum_logprob=sum_logprob.tolist(),
        batch_iterations=batch_iterations,
    )


def _recurse(
    head: OutputHead,
    recursion: TopLayerRecursion,
    eglr: EGLRConfig,
    logits: torch.Tensor,
    log_probs: torch.Tensor,
    active: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Gate this step per row and iterate the top layers on the gated rows.

    Returns the final logits and log-probabilities, which rows were gated, how
    many re-applications each row took and how many were run on the batch.
    """
    gated = active & (entropy(log_probs) > eglr.tau)
    iterations = torch.zeros_like(gated, dtype=torch.long)
    if not bool(gated.any()):
        recursion.end_step()
        return logits, log_probs, gated, iterations, 0
    hidden = recursion.hidden
    running = gated
    for passes in range(1, eglr.k_max + 1):
        new_hidden = recursion.reapply(hidden, keep_rows=None if bool(running.all()) else ~running)
        new_logits = head(new_hidden)[:, -1]
        new_log_probs = torch.log_softmax(new_logits.float(), dim=-1)
        # After the last permitted pass every row stops anyway; skip the convergence test.
        converged = _converged(eglr, new_log_probs, log_probs) if passes < eglr.k_max else running
        take = running[:, None]
        hidden = torch.where(running[:, None, None], new_hidden, hidden)
        logits = torch.where(take, new_logits, logits)
        log_probs = torch.where(take, new_log_probs, log_probs)
        iterations += running
        running = running & ~converged
        if not bool(running.any()):
            break
    recursion.end_step()
    return logits, log_probs, gated, iterations, passes


def _converged(eglr: EGLRConfig, new_log_probs: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """Per row: has the distribution stopped changing between two successive iterates?"""
    if eglr.criterion == "kl":
        return kl_divergence(new_log_probs, log_probs) < eglr.eps
    return new_log_probs.argmax(-1) == log_probs.argmax(-1)
