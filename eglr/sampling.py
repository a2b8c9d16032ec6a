"""Token choice: greedy, or temperature + nucleus sampling driven by one generator per row.

Each row owns a ``torch.Generator`` and draws exactly one uniform number per
decoding step, whatever happens to the other rows and whether or not the step
was gated. A token is then read off the (nucleus-truncated) CDF at that number.
So a row's random stream, and hence its tokens, depend only on its own seed and
logits, never on the batch it was run in.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def row_seeds(seed: int | Sequence[int] | None, batch_size: int) -> list[int]:
    """One seed per row.

    A single int ``s`` gives rows the seeds ``s, s+1, ...`` so identical prompts in
    a batch still get different samples; pass one seed per row to make a row's
    output independent of its position in the batch. ``None`` draws a base seed
    from torch's global generator (so ``torch.manual_seed`` still controls it).
    """
    if seed is None:
        base = int(torch.randint(0, 2**62, (1,)).item())
        return [base + row for row in range(batch_size)]
    if isinstance(seed, bool):
        raise ValueError(f"seed must be an int or one int per row, got {seed!r}")
    if isinstance(seed, int):
        return [seed + row for row in range(batch_size)]
    seeds = list(seed)
    if len(seeds) != batch_size or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"seed must be an int or {batch_size} ints (one per row), got {seed!r}")
    return seeds


def row_generators(seeds: Sequence[int], device: torch.device) -> list[torch.Generator]:
    """A seeded generator on ``device`` for each row."""
    return [torch.Generator(device=device).manual_seed(seed) for seed in seeds]


def draw_uniforms(generators: Sequence[torch.Generator], device: torch.device) -> torch.Tensor:
    """One uniform number in [0, 1) per row, each from that row's own generator."""
    draws = [torch.rand(1, generator=generator, device=device) for generator in generators]
    return torch.cat(draws)


def choose_tokens(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    uniforms: torch.Tensor | None,
) -> torch.Tensor:
    """Next token per row from ``logits`` [batch, vocab].

    Greedy (argmax) when ``temperature`` is 0; otherwise the token whose
    interval of the CDF of softmax(logits / temperature), restricted to the
    smallest set of most likely tokens holding ``top_p`` of the mass, contains
    the row's uniform number.
    """
    if temperature == 0:
        # The index of the first maximum, as argmax gives it (max(dim) is several times faster on CPUs).
        return logits.max(dim=-1).indices
    if uniforms is None:
        raise ValueError("sampling at temperature > 0 needs one uniform number per row")
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        probs, order = probs.sort(dim=-1, descending=True, stable=True)
        mass_before = probs.cumsum(dim=-1) - probs
        probs = torch.where(mass_before < top_p, probs, torch.zeros_like(probs))
    cdf = probs.cumsum(dim=-1)
    targets = (uniforms.to(cdf.dtype) * cdf[:, -1]).unsqueeze(-1)
    index = torch.searchsorted(cdf, targets, right=True)
    # Rounding can put u * total at the very end of the CDF: fall back to the last token with mass.
    last_with_mass = (probs > 0).cumsum(dim=-1).argmax(dim=-1, keepdim=True)
    index = torch.minimum(index, last_with_mass)
    if top_p < 1.0:
        index = order.gather(-1, index)
    return index.squeeze(-1)


def validate_sampling(temperature: float, top_p: float) -> None:
    """Raise ``ValueError`` for a temperature or top-p outside their ranges."""
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if not isinstance(top_p, (int, float)) or math.isnan(top_p) or not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
