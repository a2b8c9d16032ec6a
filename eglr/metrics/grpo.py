"""How much learning signal a pool would give GRPO.

GRPO samples a group of G rollouts per prompt and uses each rollout's reward
minus the group mean as its advantage, so a prompt whose group is all correct
or all wrong teaches nothing. For a problem whose pool has n rollouts, c of
them correct (p = c / n), and a group drawn uniformly from the pool:

* without replacement (the number correct is hypergeometric)
    P(mixed group) = 1 - C(c, G)/C(n, G) - C(n-c, G)/C(n, G)
    E[reward variance] = p (1 - p) * n (G - 1) / (G (n - 1))
* with replacement (binomial, the pool read as a sampling distribution)
    P(mixed group) = 1 - p^G - (1 - p)^G
    E[reward variance] = p (1 - p) (G - 1) / G

"Reward variance" is the population variance (divide by G) of the group's 0/1
rewards. Both are exact expectations, not Monte Carlo estimates.
"""
from __future__ import annotations

import numpy as np

from eglr.metrics.pools import pass_at_k


def grpo_signal(
    n: np.ndarray, c: np.ndarray, group_size: int, replacement: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per problem, P(a random group has both correct and wrong rollouts) and
    E[within-group reward variance]. NaN where the pool has no rollouts or, drawing
    without replacement, fewer than ``group_size``."""
    if int(group_size) != group_size or group_size < 1:
        raise ValueError(f"group_size must be a positive integer, got {group_size!r}")
    n, c = np.asarray(n, dtype=np.int64), np.asarray(c, dtype=np.int64)
    mixed, variance = np.full(n.shape, np.nan), np.full(n.shape, np.nan)
    if replacement:
        usable = n > 0
        p = c[usable] / n[usable]
        mixed[usable] = 1.0 - p**group_size - (1.0 - p) ** group_size
        variance[usable] = p * (1.0 - p) * (group_size - 1) / group_size
        return mixed, variance
    usable = n >= group_size
    n_ok, c_ok = n[usable], c[usable]
    some_correct = pass_at_k(n_ok, c_ok, group_size)
    some_wrong = pass_at_k(n_ok, n_ok - c_ok, group_size)
    mixed[usable] = some_correct + some_wrong - 1.0
    p = c_ok / n_ok
    shrink = np.where(n_ok > 1, n_ok * (group_size - 1) / (group_size * np.maximum(n_ok - 1, 1)), 0.0)
    variance[usable] = p * (1.0 - p) * shrink
    return mixed, variance
