"""Self-consistency: majority vote over the extracted answers of a candidate set.

Answers are grouped by a key function (by default ``eglr.grading.answer_key``,
a cheap canonical form, so ``0.5`` and ``\\frac{1}{2}`` vote together). Rollouts
without an extracted answer abstain.

Tie rule: among the answers with the most votes, the winner is the one whose
earliest rollout comes first in the canonical order (layer span, temperature,
sample) -- that is, the answer of the least-perturbed decode. The vote is
graded by that earliest rollout's ``correct`` flag. A set in which every
rollout abstains counts as wrong.
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
    first_appearances,
    first_max_per_set,
    in_set_order,
    mean_over_draws,
    set_starts,
)

AnswerKey = Callable[[str | None], str]


def default_answer_key() -> AnswerKey:
    """``eglr.grading.answer_key``, imported only when a vote needs it."""
    from eglr.grading import answer_key

    return answer_key


def exact_answer_key(extracted: str | None) -> str:
    """Group answers by their exact text, whitespace trimmed: a grader-free key."""
    return "" if extracted is None else extracted.strip()


def answer_codes(extracted: pd.Series, key: AnswerKey | None = None) -> np.ndarray:
    """An integer per rollout, equal for equivalent answers; -1 where there is no answer.

    The key runs once per distinct extracted string, not once per rollout; a key
    of ``None`` or ``""`` counts as no answer.
    """
    key = key or default_answer_key()
    if isinstance(extracted.dtype, pd.CategoricalDtype):  # already numbered: no hashing
        string_codes, distinct = extracted.cat.codes.to_numpy(), extracted.cat.categories
    else:
        string_codes, distinct = pd.factorize(extracted, use_na_sentinel=True)
    keys = pd.Series([key(str(value)) for value in distinct], dtype=object)
    keys[keys.isna() | (keys == "")] = None
    key_codes, _ = pd.factorize(keys, use_na_sentinel=True)
    codes = np.full(len(extracted), -1, dtype=np.int64)
    present = string_codes >= 0
    codes[present] = key_codes[string_codes[present]]
    return codes


def majority_vote(candidates: pd.DataFrame, key: AnswerKey | None = None) -> pd.DataFrame:
    """The vote of each candidate set (see :func:`eglr.metrics.sampling.candidate_sets`).

    One row per set with its problem, ``draw``, ``answer`` (the winning
    rollout's extracted answer, missing if all abstained), ``votes`` and ``correct``.
    """
    candidates = in_set_order(candidates)
    set_ids = candidates["candidate_set"].to_numpy().astype(np.int64)
    codes = answer_codes(candidates["extracted"], key)
    voting = np.flatnonzero(codes >= 0)
    # One group per (set, answer), numbered in order of first appearance: within a
    # set, by the position of the answer's earliest rollout.
    answer_group, _ = pd.factorize(set_ids[voting] * (codes.max(initial=0) + 1) + codes[voting])
    votes = np.bincount(answer_group)
    earliest = voting[first_appearances(answer_group)]
    winning = first_max_per_set(set_ids[earliest], votes)
    winners = earliest[winning]

    result = candidates.iloc[set_starts(set_ids)][["candidate_set", *PROBLEM_KEY, "draw"]]
    result = result.reset_index(drop=True)
    won = pd.DataFrame(
        {
            "candidate_set": set_ids[winners],
            "answer": candidates["extracted"].iloc[winners].to_numpy(dtype=object),
            "votes": votes[winning],
            "correct": candidates["correct"].to_numpy()[winners],
        }
    )
    result = result.merge(won, on="candidate_set", how="left")
    result["votes"] = result["votes"].fillna(0).astype("int64")
    result["correct"] = result["correct"].fillna(False).astype(bool)
    return result


def majority_vote_accuracy(
    rollouts: pd.DataFrame,
    pool: Pool,
    budget: int | None = None,
    key: AnswerKey | None = None,
    n_draws: int = DEFAULT_DRAWS,
    seed: int = 0,
) -> pd.DataFrame:
    """Per problem, the fraction of candidate sets whose vote is correct (column ``value``)."""
    candidates = candidate_sets(rollouts.loc[pool.mask(rollouts)], budget, n_draws, seed)
    return mean_over_draws(majority_vote(candidates, key), "correct")
