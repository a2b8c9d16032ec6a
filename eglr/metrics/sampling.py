"""Candidate sets: the rollouts a selection rule (majority vote, best-of-N) chooses among.

With no budget, a problem's candidate set is its whole pool. With a budget of
``k`` rollouts, each of ``n_draws`` draws takes a uniformly random ``k``-subset
of every problem's pool; accuracies are then averaged over draws (a Monte Carlo
estimate of the expectation over subsets, unlike pass@k which is exact).

Draws are balanced: consecutive draws cut one random permutation of a problem's
rollouts into disjoint blocks of ``k``, so with ``n / k`` draws every rollout is
used exactly once. Each subset is still uniformly random, and the estimate has
less variance than with independent subsets.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from eglr.metrics.io import PROBLEM_KEY, ROLLOUT_KEY

# Subsets near the pool's size mostly agree, so a few draws per problem suffice;
# the bootstrap over problems dominates the uncertainty.
DEFAULT_DRAWS = 8


def candidate_sets(
    rollouts: pd.DataFrame, budget: int | None = None, n_draws: int = DEFAULT_DRAWS, seed: int = 0
) -> pd.DataFrame:
    """The rollouts of each candidate set, with three added columns.

    ``candidate_set`` numbers the sets (one per problem and draw), ``draw`` is the
    draw index and ``position`` is the rollout's rank within its problem in the
    canonical order (layer span, temperature, sample) that breaks ties
    deterministically. Problems with at most ``budget`` rollouts use all of them
    in every draw; if no problem has more, a single draw is made.
    """
    if budget is not None and budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    if n_draws < 1:
        raise ValueError(f"n_draws must be >= 1, got {n_draws}")
    # Sort only the key columns; the full rows are copied once, at the end.
    keys = rollouts[ROLLOUT_KEY].reset_index(drop=True)
    order = keys.sort_values(ROLLOUT_KEY).index.to_numpy()
    problem = keys.groupby(PROBLEM_KEY, observed=True, sort=True).ngroup().to_numpy()[order]
    sizes = np.bincount(problem)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    position = np.arange(len(order)) - starts[problem]
    n_problems = len(sizes)
    if budget is None or sizes.max(initial=0) <= budget:
        rows, sets, draws = np.arange(len(order)), problem, np.zeros(len(order), dtype=np.int64)
    else:
        picked_rows = _balanced_subsets(sizes, starts, budget, n_draws, np.random.default_rng(seed))
        rows = np.concatenate(picked_rows)
        draws = np.repeat(np.arange(n_draws), [len(chosen) for chosen in picked_rows])
        sets = draws * n_problems + problem[rows]
    candidates = rollouts.iloc[order[rows]].reset_index(drop=True)  # by set, then position
    candidates["candidate_set"] = sets
    candidates["draw"] = draws
    candidates["position"] = position[rows]
    return candidates


def _balanced_subsets(
    sizes: np.ndarray, starts: np.ndarray, budget: int, n_draws: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Per draw, the rows of a random ``budget``-subset of every problem (all rows of a
    smaller one): block ``d mod m`` of permutation ``d div m``, where ``m = n // budget``.
    Problems are rows of a padded matrix, so each permutation is one vectorised sort."""
    n_problems, width = len(sizes), int(sizes.max())
    column = np.arange(width)[None, :]
    padding = column >= sizes[:, None]
    blocks = np.maximum(sizes // budget, 1)
    ranks = np.empty((-(-n_draws // int(blocks.min())), n_problems, width), dtype=np.int32)
    for permutation in ranks:
        keys = rng.random((n_problems, width))
        keys[padding] = np.inf
        np.put_along_axis(permutation, np.argsort(keys, axis=1), column.astype(np.int32), axis=1)
    problem = np.arange(n_problems)
    picked = []
    for draw in range(n_draws):
        rank = ranks[draw // blocks, problem]
        low = (draw % blocks * budget)[:, None]
        chosen = (rank >= low) & (rank < low + budget) & ~padding
        picked.append((starts[:, None] + column)[chosen])
    return picked


def in_set_order(candidates: pd.DataFrame) -> pd.DataFrame:
    """The candidates ordered by set and, within a set, by canonical position -- the
    order :func:`candidate_sets` returns them in, which the selection rules rely on."""
    set_ids = candidates["candidate_set"].to_numpy()
    position = candidates["position"].to_numpy()
    same_set = set_ids[1:] == set_ids[:-1]
    if np.all(set_ids[1:] >= set_ids[:-1]) and np.all(position[1:][same_set] > position[:-1][same_set]):
        return candidates
    return candidates.sort_values(["candidate_set", "position"], ignore_index=True)


def set_starts(set_ids: np.ndarray) -> np.ndarray:
    """Index of the first row of each run of equal set ids."""
    return np.flatnonzero(np.concatenate([[True], set_ids[1:] != set_ids[:-1]])) if len(set_ids) else set_ids


def dense_set_ids(set_ids: np.ndarray) -> np.ndarray:
    """The sets numbered 0, 1, 2, ...: by a running count when the rows come in set
    order (no hashing), else in order of first appearance."""
    if not len(set_ids) or not np.all(set_ids[1:] >= set_ids[:-1]):
        return pd.factorize(set_ids)[0].astype(np.int64)
    return np.cumsum(np.concatenate([[0], set_ids[1:] != set_ids[:-1]]))


def first_max_per_set(set_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For rows grouped by set (each set's rows contiguous), the index of the first row
    of each set holding the set's largest value -- ties go to the earliest row."""
    starts = set_starts(set_ids)
    if not len(starts):
        return starts
    best = np.maximum.reduceat(values, starts)
    set_index = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(values))))
    hits = np.flatnonzero(values == best[set_index])
    return hits[set_starts(set_index[hits])]


def first_appearances(ids: np.ndarray) -> np.ndarray:
    """Where each id first occurs, for ids numbered in order of first appearance
    (as ``pd.factorize`` numbers them): the rows whose id exceeds every earlier one."""
    if not len(ids):
        return ids
    running_max = np.maximum.accumulate(ids)
    return np.flatnonzero(np.concatenate([[True], ids[1:] > running_max[:-1]]))


def mean_over_draws(per_set: pd.DataFrame, column: str) -> pd.DataFrame:
    """Average a per-set result over draws: one row per problem, the mean in column ``value``."""
    grouped = per_set.groupby(PROBLEM_KEY, observed=True, sort=True)[column]
    return grouped.mean().astype(float).rename("value").reset_index()
