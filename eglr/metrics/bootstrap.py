"""Percentile bootstrap over problems.

Problems, not rollouts, are the unit of resampling: a benchmark is a sample of
problems, and rollouts of one problem are correlated. Every metric of a
(model, benchmark) is computed from the same resampled problem sets, so the
intervals of two metrics -- and of their per-problem difference -- are paired.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95
_SMALL_PRODUCT = 20_000_000


@dataclass(frozen=True)
class Bootstrap:
    """How confidence intervals are computed: resamples of the problems, level, seed."""

    n_resamples: int = DEFAULT_RESAMPLES
    confidence: float = DEFAULT_CONFIDENCE
    seed: int = 0


def bootstrap_ci(
    values: np.ndarray,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean of each column over rows (problems) and its percentile bootstrap interval.

    ``values`` is ``(n_problems,)`` or ``(n_problems, n_metrics)``; NaN marks a
    problem a metric does not cover and is left out of that metric's means. Returns
    ``(estimate, low, high)`` shaped like one row of ``values``.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    values = np.asarray(values, dtype=float)
    if values.ndim not in (1, 2):
        raise ValueError(f"values must be 1-D or 2-D, got shape {values.shape}")
    matrix = values.reshape(len(values), -1)
    n_problems, n_metrics = matrix.shape
    if n_problems == 0:
        empty = np.full(n_metrics, np.nan)
        return _like_row(values, empty), _like_row(values, empty), _like_row(values, empty)
    covered = ~np.isnan(matrix)
    filled = np.where(covered, matrix, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        estimate = filled.sum(axis=0) / covered.sum(axis=0)
        weights = _resample_weights(n_problems, n_resamples, seed)
        resampled = _product(weights, filled)
        sparse = ~covered.all(axis=0)
        resampled[:, ~sparse] /= n_problems
        if sparse.any():
            resampled[:, sparse] /= _product(weights, covered[:, sparse].astype(float))
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(resampled, [tail, 100 - tail], axis=0)
    gaps = np.isnan(resampled).any(axis=0) & covered.any(axis=0)
    if gaps.any():
        # A resample can miss every problem a sparse metric covers; ignore those.
        low[gaps], high[gaps] = np.nanpercentile(resampled[:, gaps], [tail, 100 - tail], axis=0)
    return _like_row(values, estimate), _like_row(values, low), _like_row(values, high)


@functools.lru_cache(maxsize=16)
def _resample_weights(n_problems: int, n_resamples: int, seed: int) -> np.ndarray:
    """How often each problem is drawn in each resample (rows sum to ``n_problems``).

    Cached: a benchmark's problem count recurs for every model and metric, and the
    same seed must give the same resamples anyway.
    """
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n_problems, size=(n_resamples, n_problems))
    picks += np.arange(n_resamples)[:, None] * n_problems
    weights = np.bincount(picks.ravel(), minlength=n_resamples * n_problems)
    weights = weights.reshape(n_resamples, n_problems).astype(float)
    weights.flags.writeable = False
    return weights


def _product(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left @ right``. Small products skip BLAS, whose thread start-up costs more
    than the arithmetic on a busy machine."""
    if left.shape[0] * left.shape[1] * right.shape[1] < _SMALL_PRODUCT:
        return np.einsum("ij,jk->ik", left, right)
    return left @ right


def _like_row(values: np.ndarray, row: np.ndarray) -> np.ndarray:
    return row.reshape(values.shape[1:]) if values.ndim == 2 else row[0]


def ci_columns(metrics: Sequence[str]) -> list[str]:
    """Each metric followed by its ``_ci_low`` and ``_ci_high`` columns, as tables name them."""
    return [name for metric in metrics for name in (metric, f"{metric}_ci_low", f"{metric}_ci_high")]


def bootstrap_table(
    per_problem: pd.DataFrame,
    by: Sequence[str],
    metrics: Sequence[str],
    item: Sequence[str] = (),
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean over problems and bootstrap interval of each metric, per ``by`` group and ``item``.

    ``per_problem`` has a ``problem_id`` column and one row per problem, ``by``
    group and ``item`` (for instance ``item=["layer_span", "temperature"]`` for a
    row per cell). All items and metrics of a group share its resamples. The
    result has the ``by`` and ``item`` columns, ``n_problems`` (problems with a
    value), and for each metric ``m`` the columns ``m``, ``m_ci_low``, ``m_ci_high``.
    A group is resampled with its own generator seeded by ``seed``, so its
    interval does not depend on which other groups are present.
    """
    by, item, metrics = list(by), list(item), list(metrics)
    if per_problem.duplicated([*by, *item, "problem_id"]).any():
        raise ValueError(f"per_problem has several rows for one problem and {by + item}")
    rows = []
    for group, frame in per_problem.groupby(by, observed=True, sort=True):
        problem_code, problems = pd.factorize(frame["problem_id"])
        if item:
            # ngroup follows the sort order of the columns, categorical order included.
            item_code = frame.groupby(item, observed=True, sort=True).ngroup().to_numpy()
            first_rows = np.unique(item_code, return_index=True)[1]
            items = list(frame[item].iloc[first_rows].itertuples(index=False, name=None))
        else:
            item_code, items = np.zeros(len(frame), dtype=np.int64), [()]
        matrix = np.full((len(problems), len(items), len(metrics)), np.nan)
        matrix[problem_code, item_code, :] = frame[metrics].to_numpy(dtype=float)
        flat = matrix.reshape(len(problems), -1)
        estimate, low, high = (
            part.reshape(len(items), len(metrics))
            for part in bootstrap_ci(flat, n_resamples, confidence, seed)
        )
        covered = (~np.isnan(matrix)).any(axis=2).sum(axis=0)
        for index, item_values in enumerate(items):
            row = dict(zip(by, group)) | dict(zip(item, item_values))
            row["n_problems"] = int(covered[index])
            for metric_index, metric in enumerate(metrics):
                row[metric] = estimate[index, metric_index]
                row[f"{metric}_ci_low"] = low[index, metric_index]
                row[f"{metric}_ci_high"] = high[index, metric_index]
            rows.append(row)
    return pd.DataFrame(rows, columns=[*by, *item, "n_problems", *ci_columns(metrics)])
