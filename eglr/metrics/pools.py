"""Pools of rollouts, per-cell accuracy, oracles and the unbiased pass@k estimator.

A *pool* is the set of a problem's rollouts drawn from chosen layer spans and
temperatures. The paper compares four:

* ``greedy``           -- layer span 0, temperature 0 (one rollout);
* ``temperature_only`` -- layer span 0, every temperature (greedy included);
* ``layer_only``       -- temperature 0, every layer span (greedy included);
* ``joint``            -- every layer span at every temperature, *balanced*: the
  same number of samples from each layer span at a temperature.

Balance matters because a sweep may draw extra samples at layer span 0 so that
the temperature-only pool is at least as large as the joint one (the paper grid
draws 24 per temperature there and 4 elsewhere). The joint pool then takes, at
each temperature, as many samples from every layer span as the smallest layer
span has -- the lowest sample indices -- so it is the L x T grid itself and not
the grid plus the temperature-only baseline. ``Pool("all")`` keeps everything.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from eglr.metrics.io import CELL_KEY, GROUP_KEY, PROBLEM_KEY


@dataclass(frozen=True)
class Pool:
    """The rollouts of each problem at the listed layer spans and temperatures (``None`` = all);
    ``balanced`` caps every cell of a temperature at the smallest cell's sample count."""

    name: str
    layer_spans: tuple[int, ...] | None = None
    temperatures: tuple[float, ...] | None = None
    balanced: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a pool needs a non-empty name")
        if self.layer_spans is not None:
            spans = tuple(int(span) for span in self.layer_spans)
            if not spans or min(spans) < 0:
                raise ValueError(f"pool {self.name!r}: layer spans must be >= 0, got {self.layer_spans!r}")
            object.__setattr__(self, "layer_spans", spans)
        if self.temperatures is not None:
            temperatures = tuple(float(t) for t in self.temperatures)
            if not temperatures or min(temperatures) < 0:
                raise ValueError(
                    f"pool {self.name!r}: temperatures must be >= 0, got {self.temperatures!r}"
                )
            object.__setattr__(self, "temperatures", temperatures)

    def mask(self, rollouts: pd.DataFrame) -> np.ndarray:
        """Which rows of a rollout frame lie in the pool."""
        keep = np.ones(len(rollouts), dtype=bool)
        if self.layer_spans is not None:
            keep &= rollouts["layer_span"].isin(self.layer_spans).to_numpy()
        if self.temperatures is not None:
            keep &= np.isclose(
                rollouts["temperature"].to_numpy()[:, None], np.asarray(self.temperatures)[None, :]
            ).any(axis=1)
        if self.balanced and keep.any():
            keep[keep] = _within_smallest_cell(rollouts.loc[keep])
        return keep


def _within_smallest_cell(rollouts: pd.DataFrame) -> np.ndarray:
    """Rows whose sample index is below the smallest layer span's sample count at
    their (model, benchmark, configuration, temperature)."""
    per_temperature = [rollouts[name] for name in GROUP_KEY] + [rollouts["temperature"]]
    per_cell = per_temperature + [rollouts["layer_span"]]
    cell_size = rollouts.groupby(per_cell, observed=True)["sample"].transform("max") + 1
    cap = cell_size.groupby(per_temperature, observed=True).transform("min")
    return (rollouts["sample"] < cap).to_numpy()


GREEDY = Pool("greedy", layer_spans=(0,), temperatures=(0.0,))
TEMPERATURE_ONLY = Pool("temperature_only", layer_spans=(0,))
LAYER_ONLY = Pool("layer_only", temperatures=(0.0,))
JOINT = Pool("joint", balanced=True)
STANDARD_POOLS = (GREEDY, TEMPERATURE_ONLY, LAYER_ONLY, JOINT)


def complete_problems(rollouts: pd.DataFrame) -> pd.DataFrame:
    """The rollouts of the problems whose grid is complete: every (layer span, temperature) cell of
    their model, benchmark and configuration, with as many rollouts as the fullest problem has there.

    A job that is still running (or was stopped) has problems with only some cells written; in a
    pool they would count as unsolved where a cell is missing, so the analysis leaves them out and
    says how many (``attrs["partial_problems"]`` of the result).
    """
    sizes = rollouts.groupby(PROBLEM_KEY + CELL_KEY, observed=True).size().rename("n").reset_index()
    full_cell = sizes["n"] == sizes.groupby(GROUP_KEY + CELL_KEY, observed=True)["n"].transform("max")
    sizes["cell"] = sizes.groupby(CELL_KEY, observed=True).ngroup()
    cells_in_group = sizes.groupby(GROUP_KEY, observed=True)["cell"].transform("nunique")
    full_cells = full_cell.groupby([sizes[name] for name in PROBLEM_KEY], observed=True).transform("sum")
    sizes["complete"] = full_cells == cells_in_group
    per_problem = sizes.drop_duplicates(PROBLEM_KEY)[[*PROBLEM_KEY, "complete"]]
    keep = rollouts[PROBLEM_KEY].merge(per_problem, on=PROBLEM_KEY, how="left")["complete"].to_numpy(dtype=bool)
    kept = rollouts.loc[keep].reset_index(drop=True)
    kept.attrs["partial_problems"] = int((~per_problem["complete"]).sum())
    return kept


def cell_counts(rollouts: pd.DataFrame) -> pd.DataFrame:
    """Rollouts ``n`` and correct rollouts ``c`` per problem and (layer span, temperature) cell."""
    grouped = rollouts.groupby(PROBLEM_KEY + CELL_KEY, observed=True, sort=True)["correct"]
    counts = grouped.agg(n="size", c="sum").reset_index()
    counts["c"] = counts["c"].astype("int64")
    return counts


def pool_counts(rollouts: pd.DataFrame, pool: Pool) -> pd.DataFrame:
    """Rollouts ``n`` and correct rollouts ``c`` of each problem in the pool.

    Every problem of ``rollouts`` gets a row, sorted by model, benchmark and
    problem, with ``n = 0`` where the pool has none of its rollouts -- so the
    counts of different pools line up row by row.
    """
    inside = pool.mask(rollouts)
    frame = rollouts[PROBLEM_KEY].assign(
        n=inside.astype(np.int64), c=(inside & rollouts["correct"].to_numpy()).astype(np.int64)
    )
    return frame.groupby(PROBLEM_KEY, observed=True, sort=True)[["n", "c"]].sum().reset_index()


def oracle(n: np.ndarray, c: np.ndarray) -> np.ndarray:
    """1.0 where a problem has a correct rollout, 0.0 where it has none, NaN where it has no rollouts."""
    n, c = np.asarray(n), np.asarray(c)
    return np.where(n > 0, (c > 0).astype(float), np.nan)


def pass_at_k(n: np.ndarray | int, c: np.ndarray | int, k: np.ndarray | int) -> np.ndarray:
    """Unbiased pass@k, ``1 - C(n-c, k) / C(n, k)``: the chance that k of the n rollouts,
    drawn without replacement, include a correct one. Arrays broadcast; needs ``1 <= k <= n``.
    """
    n, c, k = np.broadcast_arrays(np.asarray(n), np.asarray(c), np.asarray(k))
    if np.any(c < 0) or np.any(c > n):
        raise ValueError(f"correct counts c must lie in [0, n]; got c={c[(c < 0) | (c > n)][:3]}")
    if np.any(k < 1) or np.any(k > n):
        bad = (k < 1) | (k > n)
        raise ValueError(f"pass@k needs 1 <= k <= n; got k={k[bad][:3]} with n={n[bad][:3]}")
    if n.size == 0:
        return np.zeros(n.shape)
    return 1.0 - _miss_probabilities(n.ravel(), c.ravel(), int(k.max()))[
        np.arange(n.size), k.ravel() - 1
    ].reshape(n.shape)


def pass_at_k_curve(n: np.ndarray, c: np.ndarray, k_max: int) -> np.ndarray:
    """pass@k for k = 1..k_max, one row per problem; where k exceeds a problem's n the
    value is pass@n (all of its rollouts), and a problem without rollouts is NaN."""
    if k_max < 1:
        raise ValueError(f"k_max must be >= 1, got {k_max}")
    n, c = np.asarray(n, dtype=np.int64), np.asarray(c, dtype=np.int64)
    curve = 1.0 - _miss_probabilities(n, c, k_max)
    curve[n == 0] = np.nan
    return curve


def _miss_probabilities(n: np.ndarray, c: np.ndarray, k_max: int) -> np.ndarray:
    """C(n-c, k) / C(n, k) for k = 1..k_max as prod_{j<k} (n-c-j) / (n-j), with the
    product frozen once j reaches n (so k > n reads as k = n)."""
    draws = np.arange(k_max)[None, :]
    n_col, c_col = n[:, None].astype(float), c[:, None].astype(float)
    active = draws < n_col
    ratio = np.where(active, np.clip(n_col - c_col - draws, 0, None) / np.where(active, n_col - draws, 1), 1.0)
    return np.cumprod(ratio, axis=1)
