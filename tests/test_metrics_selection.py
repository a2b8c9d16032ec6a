"""Candidate sets, majority vote and best-of-N on sets whose outcome is worked out by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eglr.metrics import (
    JOINT,
    AnswerFrequencyScorer,
    Pool,
    best_of_n,
    best_of_n_accuracy,
    candidate_sets,
    exact_answer_key,
    majority_vote,
    majority_vote_accuracy,
    mean_logprob_scorer,
    oracle_verifier,
)
from eglr.metrics.synthetic import synthetic_rollouts

ALL = Pool("all")


def problems(answers: dict[str, list[tuple[str | None, bool]]]) -> pd.DataFrame:
    """Rollouts of each problem in canonical order (sample = position), from (answer, correct) pairs."""
    rows = [
        {"model": "m", "benchmark": "b", "configuration": "", "problem_id": problem, "layer_span": 0,
         "temperature": 0.7, "sample": index, "extracted": answer, "correct": correct, "mean_logprob": np.nan}
        for problem, items in answers.items() for index, (answer, correct) in enumerate(items)
    ]
    return pd.DataFrame(rows)


def votes_by_problem(rollouts: pd.DataFrame, key=exact_answer_key) -> pd.DataFrame:
    return majority_vote(candidate_sets(rollouts), key).set_index("problem_id")


def test_majority_wins_and_abstentions_do_not_vote():
    answers = [("7", False), ("42", True), (" 42", True), (None, False), (None, False)]
    result = votes_by_problem(problems({"a": answers}))
    assert result.loc["a", "answer"] == "42" and result.loc["a", "votes"] == 2 and result.loc["a", "correct"]


def test_ties_go_to_the_answer_seen_first_in_canonical_order():
    rollouts = problems({
        "tie": [("5", False), ("42", True)],
        "two_two": [("x", False), ("y", True), ("y", True), ("x", False)],
    })
    shuffled = rollouts.sample(frac=1.0, random_state=3)  # input order must not matter
    result = votes_by_problem(shuffled)
    assert result.loc["tie", "answer"] == "5" and not result.loc["tie", "correct"]
    assert result.loc["two_two", "answer"] == "x" and result.loc["two_two", "votes"] == 2


def test_all_abstaining_counts_as_wrong():
    result = votes_by_problem(problems({"silent": [(None, False), (None, True)]}))
    assert result.loc["silent", "votes"] == 0 and not result.loc["silent", "correct"]
    assert pd.isna(result.loc["silent", "answer"])


def test_equivalent_answers_vote_together_with_an_explicit_key():
    halves = {"0.5": "1/2", "1/2": "1/2"}
    rollouts = problems({"half": [("3", False), ("1/2", True), ("0.5", True)]})
    assert not votes_by_problem(rollouts).loc["half", "correct"]  # exact text: a three-way tie
    grouped = votes_by_problem(rollouts, key=lambda answer: halves.get(answer, answer))
    assert grouped.loc["half", "votes"] == 2 and grouped.loc["half", "correct"]


def test_default_key_is_the_graders_answer_key():
    pytest.importorskip("eglr.grading")
    rollouts = problems({"half": [("3", False), ("\\frac{1}{2}", True), ("0.5", True)]})
    result = majority_vote(candidate_sets(rollouts)).set_index("problem_id")
    assert result.loc["half", "votes"] == 2 and result.loc["half", "correct"]


def test_budget_draws_subsets_of_the_right_size_uniformly():
    rollouts = problems({"big": [(str(i), False) for i in range(6)], "small": [("1", True), ("2", False)]})
    candidates = candidate_sets(rollouts, budget=4, n_draws=3000, seed=1)
    sizes = candidates.groupby(["problem_id", "draw"], observed=True).size()
    assert set(sizes.loc["big"]) == {4} and set(sizes.loc["small"]) == {2}
    assert not candidates.duplicated(["candidate_set", "position"]).any()
    # Each of the 6 rollouts is in a random 4-subset with probability 2/3.
    inclusion = candidates.loc[candidates["problem_id"] == "big"].groupby("position").size() / 3000
    assert inclusion.to_numpy() == pytest.approx(np.full(6, 2 / 3), abs=0.04)


def test_draws_are_balanced_so_n_over_k_draws_use_every_rollout_once():
    rollouts = problems({"six": [(str(i), False) for i in range(6)], "seven": [(str(i), False) for i in range(7)]})
    candidates = candidate_sets(rollouts, budget=2, n_draws=3, seed=5)
    uses = candidates.groupby(["problem_id", "position"]).size()
    assert (uses.loc["six"] == 1).all()  # 3 disjoint pairs cover the 6 rollouts
    assert len(uses.loc["seven"]) == 6 and (uses.loc["seven"] == 1).all()  # one of 7 left out


def test_majority_vote_at_a_budget_averages_over_subsets():
    # Positions 0: "B" (wrong), 1 and 2: "A" (right). Of the three 2-subsets, {0,1} and
    # {0,2} tie and go to "B"; only {1,2} elects "A": expected accuracy 1/3.
    rollouts = problems({"p": [("B", False), ("A", True), ("A", True)]})
    accuracy = majority_vote_accuracy(rollouts, ALL, budget=2, key=exact_answer_key, n_draws=3000, seed=0)
    assert accuracy["value"].iloc[0] == pytest.approx(1 / 3, abs=0.035)
    # Without a budget, "A" wins outright.
    assert majority_vote_accuracy(rollouts, ALL, key=exact_answer_key)["value"].iloc[0] == 1.0


def test_oracle_verifier_recovers_the_oracle():
    rollouts = problems({"solved": [("1", False), ("2", True)], "unsolved": [("1", False), ("3", False)]})
    chosen = best_of_n(candidate_sets(rollouts), oracle_verifier).set_index("problem_id")
    assert chosen.loc["solved", "correct"] == 1.0 and chosen.loc["unsolved", "correct"] == 0.0


def test_mean_logprob_picks_the_most_confident_rollout_and_skips_unscored_sets():
    rollouts = problems({"p": [("1", False), ("2", True), ("3", False)], "q": [("1", True), ("2", False)]})
    rollouts.loc[rollouts["problem_id"] == "p", "mean_logprob"] = [-0.9, -0.2, -0.2]  # tie: earliest wins
    chosen = best_of_n(candidate_sets(rollouts), mean_logprob_scorer).set_index("problem_id")
    assert chosen.loc["p", "correct"] == 1.0 and chosen.loc["p", "score"] == -0.2
    assert np.isnan(chosen.loc["q", "correct"])  # no scores recorded: no choice


def test_answer_frequency_scores_follow_the_rows_given():
    candidates = candidate_sets(problems({"p": [("1", False), ("2", True), ("2", True)], "q": [("5", True)]}))
    shuffled = candidates.iloc[[3, 1, 0, 2]]
    scores = AnswerFrequencyScorer(exact_answer_key)(shuffled)
    assert scores.tolist() == pytest.approx([1.0, 2 / 3, 1 / 3, 2 / 3])


def test_answer_frequency_best_of_n_is_majority_vote():
    rollouts = synthetic_rollouts(models=("m",), benchmarks=("b",), n_problems=25, seed=4)
    for budget in (None, 5):
        vote = majority_vote_accuracy(rollouts, JOINT, budget, key=exact_answer_key, n_draws=4)
        frequency = best_of_n_accuracy(rollouts, JOINT, AnswerFrequencyScorer(exact_answer_key), budget, n_draws=4)
        assert vote["value"].tolist() == frequency["value"].tolist()


def test_a_scorer_must_score_every_candidate():
    candidates = candidate_sets(problems({"p": [("1", True), ("2", False)]}))
    with pytest.raises(ValueError, match="one score per candidate"):
        best_of_n(candidates, lambda frame: np.zeros(1))
    with pytest.raises(ValueError, match="budget"):
        candidate_sets(problems({"p": [("1", True)]}), budget=0)
