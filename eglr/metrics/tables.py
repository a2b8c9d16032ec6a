"""The paper's tables as DataFrames, computed from a rollout frame (:func:`load_rollouts`).

Every function takes the rollouts of any number of models, benchmarks and
configurations and returns one frame with ``model``, ``benchmark`` and
``configuration`` columns (:data:`eglr.metrics.io.GROUP_KEY`): rollouts of
different configurations are never pooled. Accuracies, oracles,
pass@k and fractions of problems are in percent, each with ``_ci_low`` and
``_ci_high`` columns: a percentile bootstrap interval over problems.

Pool sizes vary by design (the joint pool holds every layer span at every
temperature), so the oracle table also compares pools at equal numbers of
rollouts, using the unbiased pass@k estimator: ``joint_at_temperature_budget``
is the chance that a random subset of the joint pool, as large as the
temperature-only pool, solves the problem.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from eglr.metrics.bootstrap import Bootstrap, bootstrap_ci, bootstrap_table, ci_columns
from eglr.metrics.complementarity import CATEGORIES, complementarity
from eglr.metrics.cost import DEFAULT_LM_HEAD_COST, cost_summary
from eglr.metrics.grpo import grpo_signal
from eglr.metrics.io import CELL_KEY, GROUP_KEY, PROBLEM_KEY, ROLLOUT_KEY
from eglr.metrics.pools import (
    JOINT,
    LAYER_ONLY,
    STANDARD_POOLS,
    TEMPERATURE_ONLY,
    Pool,
    cell_counts,
    oracle,
    pass_at_k,
    pass_at_k_curve,
    pool_counts,
)
from eglr.metrics.sampling import DEFAULT_DRAWS, candidate_sets, mean_over_draws
from eglr.metrics.verifiers import (
    AnswerFrequencyScorer,
    Scorer,
    best_of_n,
    mean_logprob_scorer,
    oracle_verifier,
)
from eglr.metrics.voting import AnswerKey, default_answer_key, majority_vote

SAMPLING_POOLS = (TEMPERATURE_ONLY, LAYER_ONLY, JOINT)
ORACLE_METRICS = (
    "greedy",
    "temperature_only",
    "layer_only",
    "joint",
    "temperature_only_at_joint_budget",
    "joint_at_temperature_budget",
    "joint_at_layer_budget",
    "joint_minus_temperature_only_equal_budget",
    "joint_minus_layer_only_equal_budget",
)


def cell_accuracy_table(rollouts: pd.DataFrame, bootstrap: Bootstrap = Bootstrap()) -> pd.DataFrame:
    """Accuracy per (layer span, temperature) cell: the mean over problems of each
    problem's fraction of correct rollouts in the cell."""
    counts = cell_counts(rollouts)
    counts["accuracy"] = counts["c"] / counts["n"]
    table = _bootstrap(counts, ["accuracy"], bootstrap, item=CELL_KEY)
    n_rollouts = counts.groupby(GROUP_KEY + CELL_KEY, observed=True)["n"].sum().rename("n_rollouts")
    table = table.merge(n_rollouts.reset_index(), on=GROUP_KEY + CELL_KEY)
    columns = GROUP_KEY + CELL_KEY + ["n_problems", "n_rollouts"] + ci_columns(["accuracy"])
    return _percent(table, ["accuracy"])[columns]


def oracle_table(rollouts: pd.DataFrame, bootstrap: Bootstrap = Bootstrap()) -> pd.DataFrame:
    """One row per (model, benchmark): oracles of the four pools and budget-matched comparisons.

    ``<pool>_n`` is the pool's size in rollouts per problem (the largest over the
    benchmark's problems; a problem missing rollouts uses those it has).
    ``temperature_only_at_joint_budget`` is pass@(joint size) of the temperature
    pool, empty when that pool is the smaller one; ``joint_at_temperature_budget``
    and ``joint_at_layer_budget`` are pass@k of the joint pool at the other pools'
    sizes, empty when the joint pool is the smaller one. The two
    ``joint_minus_*_equal_budget`` columns compare the joint pool with another at
    the smaller pool's size (pass@k of each, k = the smaller size), with paired
    intervals: the gain that pool size cannot explain.
    """
    pools = {pool.name: pool_counts(rollouts, pool) for pool in STANDARD_POOLS}
    n = {name: frame["n"].to_numpy() for name, frame in pools.items()}
    c = {name: frame["c"].to_numpy() for name, frame in pools.items()}
    size = {
        name: frame.groupby(GROUP_KEY, observed=True)["n"].transform("max").to_numpy()
        for name, frame in pools.items()
    }

    def at_budget(name: str, budget: np.ndarray) -> np.ndarray:
        return _pass_at_budget(n[name], c[name], size[name], budget)

    per_problem = pools["joint"][PROBLEM_KEY].copy()
    for name in pools:
        per_problem[name] = oracle(n[name], c[name])
    per_problem["temperature_only_at_joint_budget"] = at_budget("temperature_only", size["joint"])
    per_problem["joint_at_temperature_budget"] = at_budget("joint", size["temperature_only"])
    per_problem["joint_at_layer_budget"] = at_budget("joint", size["layer_only"])
    for other in ("temperature_only", "layer_only"):
        equal = np.minimum(size[other], size["joint"])
        per_problem[f"joint_minus_{other}_equal_budget"] = at_budget("joint", equal) - at_budget(other, equal)
    table = _bootstrap(per_problem, list(ORACLE_METRICS), bootstrap)
    for name in ("temperature_only", "layer_only", "joint"):
        sizes = pools[name].groupby(GROUP_KEY, observed=True)["n"].max().rename(f"{name}_n")
        table = table.merge(sizes.reset_index(), on=GROUP_KEY)
    sizes_first = GROUP_KEY + ["n_problems", "temperature_only_n", "layer_only_n", "joint_n"]
    return _percent(table, list(ORACLE_METRICS))[sizes_first + ci_columns(ORACLE_METRICS)]


def _pass_at_budget(n: np.ndarray, c: np.ndarray, pool_size: np.ndarray, budget: np.ndarray) -> np.ndarray:
    """pass@budget per problem; NaN where the pool is smaller than the budget or the
    problem has no rollouts in it; a problem short of rollouts uses all it has."""
    usable = (pool_size >= budget) & (n > 0) & (budget > 0)
    values = np.full(len(n), np.nan)
    values[usable] = pass_at_k(n[usable], c[usable], np.minimum(budget[usable], n[usable]))
    return values


def pass_at_k_table(
    rollouts: pd.DataFrame,
    pools: Sequence[Pool] = SAMPLING_POOLS,
    k_max: int | None = None,
    bootstrap: Bootstrap = Bootstrap(),
) -> pd.DataFrame:
    """pass@k for k = 1 .. pool size (or ``k_max``) per pool: the curves that compare
    pools at equal numbers of rollouts."""
    parts = []
    for pool in pools:
        for names, group in pool_counts(rollouts, pool).groupby(GROUP_KEY, observed=True, sort=True):
            largest = int(group["n"].max())
            if largest == 0:
                continue
            top = largest if k_max is None else min(largest, k_max)
            curve = pass_at_k_curve(group["n"].to_numpy(), group["c"].to_numpy(), top)
            estimate, low, high = bootstrap_ci(curve, bootstrap.n_resamples, bootstrap.confidence, bootstrap.seed)
            parts.append(pd.DataFrame({
                **dict(zip(GROUP_KEY, names)), "pool": pool.name, "k": np.arange(1, top + 1),
                "n_problems": int((group["n"] > 0).sum()),
                "pass_at_k": 100 * estimate, "pass_at_k_ci_low": 100 * low, "pass_at_k_ci_high": 100 * high,
            }))
    return _concat(parts, GROUP_KEY + ["pool", "k", "n_problems"] + ci_columns(["pass_at_k"]))


def complementarity_table(rollouts: pd.DataFrame, bootstrap: Bootstrap = Bootstrap()) -> pd.DataFrame:
    """Problems solved by both axes, only by the layer axis, only by temperature, or
    neither: counts (``n_<category>``) and percent of problems with intervals."""
    per_problem = complementarity(rollouts)
    for category in CATEGORIES:
        per_problem[category] = (per_problem["category"] == category).astype(float)
    table = _bootstrap(per_problem, list(CATEGORIES), bootstrap)
    for category in CATEGORIES:
        table[f"n_{category}"] = np.rint(table[category] * table["n_problems"]).astype("int64")
    counts = [f"n_{category}" for category in CATEGORIES]
    return _percent(table, list(CATEGORIES))[GROUP_KEY + ["n_problems"] + counts + ci_columns(CATEGORIES)]


def grpo_table(
    rollouts: pd.DataFrame,
    pools: Sequence[Pool] = SAMPLING_POOLS,
    group_sizes: Sequence[int] = (4, 8, 16),
    replacement: bool = False,
    bootstrap: Bootstrap = Bootstrap(),
) -> pd.DataFrame:
    """Per pool and GRPO group size: percent of problems whose group would have a
    non-zero advantage (``mixed_groups``) and the mean within-group reward variance,
    both exact expectations over random groups (see :mod:`eglr.metrics.grpo`).
    Problems with fewer rollouts than the group (drawing without replacement) are
    left out; a pool too small for a group size gets no row."""
    parts = []
    for pool in pools:
        frame = pool_counts(rollouts, pool)
        for group_size in group_sizes:
            mixed, variance = grpo_signal(frame["n"], frame["c"], group_size, replacement)
            parts.append(frame[PROBLEM_KEY].assign(
                pool=pool.name, group_size=group_size, mixed_groups=mixed, reward_variance=variance
            ))
    per_problem = pd.concat(parts, ignore_index=True)
    per_problem["pool"] = pd.Categorical(per_problem["pool"], categories=[pool.name for pool in pools])
    table = _bootstrap(per_problem, ["mixed_groups", "reward_variance"], bootstrap, item=["pool", "group_size"])
    table = table.loc[table["n_problems"] > 0].reset_index(drop=True)
    return _percent(table, ["mixed_groups"])


def cost_table(rollouts: pd.DataFrame, lm_head_cost: float = DEFAULT_LM_HEAD_COST) -> pd.DataFrame:
    """Per (layer span, temperature) cell: tokens, gated-step rate, re-applications
    and relative compute (see :mod:`eglr.metrics.cost` for the cost model)."""
    return cost_summary(rollouts, GROUP_KEY + CELL_KEY, lm_head_cost)


Selector = Callable[[pd.DataFrame], pd.DataFrame]


def selection_rules(
    rollouts: pd.DataFrame, key: AnswerKey | None = None, scorers: Mapping[str, Scorer] | None = None
) -> dict[str, Selector]:
    """Majority vote and best-of-N with each scorer, as selection rules for
    :func:`selection_table`. Default scorers: the oracle verifier (upper bound),
    answer frequency, and mean token log-probability when rollouts record it."""
    key = functools.lru_cache(maxsize=None)(key or default_answer_key())
    if scorers is None:
        scorers = {"oracle": oracle_verifier, "answer_frequency": AnswerFrequencyScorer(key)}
        if "mean_logprob" in rollouts and rollouts["mean_logprob"].notna().any():
            scorers["mean_logprob"] = mean_logprob_scorer
    rules: dict[str, Selector] = {"majority_vote": functools.partial(majority_vote, key=key)}
    rules |= {name: functools.partial(best_of_n, scorer=scorer) for name, scorer in scorers.items()}
    return rules


def majority_vote_table(
    rollouts: pd.DataFrame,
    pools: Sequence[Pool] = SAMPLING_POOLS,
    key: AnswerKey | None = None,
    n_draws: int = DEFAULT_DRAWS,
    bootstrap: Bootstrap = Bootstrap(),
) -> pd.DataFrame:
    """Self-consistency accuracy (column ``majority_vote``) per pool, at the budgets of
    :func:`selection_budgets`. See :mod:`eglr.metrics.voting` for the grouping and tie rule."""
    rules = {"majority_vote": selection_rules(rollouts, key, scorers={})["majority_vote"]}
    return selection_table(rollouts, rules, pools, n_draws, bootstrap)


def best_of_n_table(
    rollouts: pd.DataFrame,
    pools: Sequence[Pool] = SAMPLING_POOLS,
    scorers: Mapping[str, Scorer] | None = None,
    key: AnswerKey | None = None,
    n_draws: int = DEFAULT_DRAWS,
    bootstrap: Bootstrap = Bootstrap(),
) -> pd.DataFrame:
    """Best-of-N accuracy, one column per scorer (default: see :func:`selection_rules`), at
    the budgets of :func:`selection_budgets`."""
    rules = selection_rules(rollouts, key, scorers)
    del rules["majority_vote"]
    return selection_table(rollouts, rules, pools, n_draws, bootstrap)


def selection_budgets(rollouts: pd.DataFrame, pools: Sequence[Pool]) -> pd.DataFrame:
    """The budgets at which pools are compared with a selection rule.

    Each pool is used whole (``budget == "full"``, ``k`` = its size), and a pool
    larger than the *equal budget* -- the smaller of the temperature-only and
    joint pools -- is also cut down to it (``budget == "equal"``): random subsets of
    ``k`` rollouts, averaged over draws. One row per (model, benchmark, configuration, pool, budget).
    """
    equal = np.minimum(_pool_sizes(rollouts, TEMPERATURE_ONLY), _pool_sizes(rollouts, JOINT))
    rows = []
    for pool in pools:
        sizes = _pool_sizes(rollouts, pool)
        for group, size in sizes[sizes > 0].items():
            rows.append((*group, pool.name, "full", int(size)))
            cap = equal.get(group, 0)
            if 0 < cap < size:
                rows.append((*group, pool.name, "equal", int(cap)))
    return pd.DataFrame(rows, columns=GROUP_KEY + ["pool", "budget", "k"])


def _pool_sizes(rollouts: pd.DataFrame, pool: Pool) -> pd.Series:
    return pool_counts(rollouts, pool).groupby(GROUP_KEY, observed=True)["n"].max()


_SELECTION_COLUMNS = ROLLOUT_KEY + ["correct", "extracted", "mean_logprob"]


def selection_table(
    rollouts: pd.DataFrame,
    rules: Mapping[str, Selector],
    pools: Sequence[Pool] = SAMPLING_POOLS,
    n_draws: int = DEFAULT_DRAWS,
    bootstrap: Bootstrap = Bootstrap(),
) -> pd.DataFrame:
    """Accuracy of selection rules, one column per rule, per pool and budget.

    A rule maps candidate sets (:func:`eglr.metrics.sampling.candidate_sets`) to
    one row per set with its problem and ``correct``, like
    :func:`eglr.metrics.voting.majority_vote` and :func:`eglr.metrics.verifiers.best_of_n`.
    All rules see the same candidate sets; groups sharing a budget are drawn together.
    """
    rollouts = rollouts[[name for name in _SELECTION_COLUMNS if name in rollouts]]
    # Answers repeat across a problem's rollouts: as categories they are copied
    # and grouped as integers in the (much larger) candidate sets.
    rollouts = rollouts.assign(extracted=rollouts["extracted"].astype("category"))
    budgets = selection_budgets(rollouts, pools)
    group_of_row = pd.MultiIndex.from_frame(rollouts[GROUP_KEY])
    parts = []
    for pool in pools:
        in_pool = pool.mask(rollouts)
        for (label, k), groups in budgets.loc[budgets["pool"] == pool.name].groupby(["budget", "k"]):
            chosen = in_pool & group_of_row.isin(pd.MultiIndex.from_frame(groups[GROUP_KEY]))
            draw_budget = None if label == "full" else int(k)
            candidates = candidate_sets(rollouts.loc[chosen], draw_budget, n_draws, bootstrap.seed)
            per_problem = candidates[PROBLEM_KEY].drop_duplicates().sort_values(PROBLEM_KEY)
            for name, select in rules.items():
                values = mean_over_draws(select(candidates), "correct").rename(columns={"value": name})
                per_problem = per_problem.merge(values, on=PROBLEM_KEY, how="left")
            parts.append(per_problem.assign(pool=pool.name, budget=label, k=int(k)))
    columns = GROUP_KEY + ["pool", "budget", "k", "n_problems"] + ci_columns(list(rules))
    if not parts:
        return pd.DataFrame(columns=columns)
    per_problem = pd.concat(parts, ignore_index=True)
    per_problem["pool"] = pd.Categorical(per_problem["pool"], categories=[pool.name for pool in pools])
    per_problem["budget"] = pd.Categorical(per_problem["budget"], categories=["full", "equal"])
    table = _bootstrap(per_problem, list(rules), bootstrap, item=["pool", "budget", "k"])
    return _percent(table, list(rules))[columns]


def _bootstrap(
    per_problem: pd.DataFrame, metrics: list[str], bootstrap: Bootstrap, item: Sequence[str] = ()
) -> pd.DataFrame:
    return bootstrap_table(
        per_problem, GROUP_KEY, metrics, item,
        bootstrap.n_resamples, bootstrap.confidence, bootstrap.seed,
    )


def _percent(table: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    columns = ci_columns(metrics)
    table[columns] = table[columns] * 100
    return table


def _concat(parts: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
