"""Best-of-N: a scorer rates every candidate rollout and the top-rated one is kept.

A scorer is any callable ``scorer(candidates) -> array of float`` returning one
score per row (higher is better). ``candidates`` holds the rollout columns plus
``candidate_set`` -- rows sharing it compete with each other, so a scorer that
needs context (like answer frequency) groups by it -- and ``position``. Among
equal scores the rollout earliest in the canonical (layer span, temperature,
sample) order wins; NaN scores rank last, and a set with no scored candidate
has no choice (its ``correct`` is NaN and it is left out of the accuracy).

The oracle verifier (score = ``correct``) makes best-of-N equal to the pool's
oracle and is the upper bound for any real verifier.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from eglr.metrics.io import PROBLEM_KEY
from eglr.metrics.pools import Pool
from eglr.metrics.sampling import (
    DEFAULT_DRAWS,
    candidate_sets,
    dense_set_ids,
    first_max_per_set,
    in_set_order,
    mean_over_draws,
)
from eglr.metrics.voting import AnswerKey, answer_codes

Scorer = Callable[[pd.DataFrame], np.ndarray]


def oracle_verifier(candidates: pd.DataFrame) -> np.ndarray:
    """1 for a correct rollout, 0 otherwise: the upper bound."""
    return candidates["correct"].to_numpy(dtype=float)


class AnswerFrequencyScorer:
    """Share of the candidate set that gave an equivalent answer (0 for no answer).

    Best-of-N with this scorer picks the majority answer with the same tie rule as
    :func:`eglr.metrics.voting.majority_vote`.
    """

    def __init__(self, key: AnswerKey | None = None) -> None:
        self.key = key

    def __call__(self, candidates: pd.DataFrame) -> np.ndarray:
        codes = answer_codes(candidates["extracted"], self.key)
        set_ids = dense_set_ids(candidates["candidate_set"].to_numpy())
        answer_group, _ = pd.factorize(set_ids * (codes.max(initial=0) + 2) + codes + 1)
        agreeing = np.bincount(answer_group)[answer_group]
        set_size = np.bincount(set_ids)[set_ids]
        return np.where(codes >= 0, agreeing / set_size, 0.0)


def mean_logprob_scorer(candidates: pd.DataFrame) -> np.ndarray:
    """The rollout's mean token log-probability (the model's own confidence); NaN where unrecorded."""
    if "mean_logprob" not in candidates:
        raise ValueError("mean_logprob scorer needs a 'mean_logprob' column")
    return candidates["mean_logprob"].to_numpy(dtype=float)


def best_of_n(candidates: pd.DataFrame, scorer: Scorer) -> pd.DataFrame:
    """The chosen rollout of each candidate set: its problem, ``draw``, ``score`` and ``correct``."""
    candidates = in_set_order(candidates)
    scores = np.asarray(scorer(candidates), dtype=float)
    if scores.shape != (len(candidates),):
        raise ValueError(f"a scorer must return one score per candidate; got shape {scores.shape}")
    set_ids = candidates["candidate_set"].to_numpy()
    dense_sets = dense_set_ids(set_ids)
    scored = np.bincount(dense_sets, weights=~np.isnan(scores))
    chosen = first_max_per_set(set_ids, np.where(np.isnan(scores), -np.inf, scores))
    result = candidates.iloc[chosen][["candidate_set", *PROBLEM_KEY, "draw"]]
    result = result.reset_index(drop=True)
    result["score"] = scores[chosen]
    result["correct"] = np.where(
        scored[dense_sets[chosen]] > 0, candidates["correct"].to_numpy(dtype=float)[chosen], np.nan
    )
    return result


def best_of_n_accuracy(
    rollouts: pd.DataFrame,
    pool: Pool,
    scorer: Scorer,
    budget: int | None = None,
    n_draws: int = DEFAULT_DRAWS,
    seed: int = 0,
) -> pd.DataFrame:
    """Per problem, the fraction of candidate sets whose chosen rollout is correct (column ``value``)."""
    candidates = candidate_sets(rollouts.loc[pool.mask(rollouts)], budget, n_draws, seed)
    return mean_over_draws(best_of_n(candidates, scorer), "correct")
