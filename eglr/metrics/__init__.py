"""Analysis of graded EGLR rollouts: pools, oracles, pass@k, voting, verifiers, GRPO, cost.

Reads rollout JSONL only (:mod:`eglr.schema` defines the records); nothing here imports the
decoding engine, torch or transformers. Every function keeps configurations apart: a rollout
frame's ``configuration`` column is part of every grouping key. Typical use::

    from eglr.metrics import load_rollouts, oracle_table
    oracle_table(load_rollouts(["results/rollouts"]))
"""
from eglr.metrics.bootstrap import Bootstrap, bootstrap_ci, bootstrap_table
from eglr.metrics.complementarity import CATEGORIES, complementarity
from eglr.metrics.cost import cost_summary, relative_compute
from eglr.metrics.grpo import grpo_signal
from eglr.metrics.io import (
    ANALYSIS_COLUMNS,
    GROUP_KEY,
    describe_configurations,
    load_rollouts,
    require_single_configuration,
    rollout_files,
)
from eglr.metrics.pools import (
    GREEDY,
    JOINT,
    LAYER_ONLY,
    STANDARD_POOLS,
    TEMPERATURE_ONLY,
    Pool,
    cell_counts,
    complete_problems,
    oracle,
    pass_at_k,
    pass_at_k_curve,
    pool_counts,
)
from eglr.metrics.sampling import candidate_sets
from eglr.metrics.tables import (
    best_of_n_table,
    cell_accuracy_table,
    complementarity_table,
    cost_table,
    grpo_table,
    majority_vote_table,
    oracle_table,
    pass_at_k_table,
    selection_budgets,
    selection_rules,
    selection_table,
)
from eglr.metrics.verifiers import (
    AnswerFrequencyScorer,
    Scorer,
    best_of_n,
    best_of_n_accuracy,
    mean_logprob_scorer,
    oracle_verifier,
)
from eglr.metrics.voting import answer_codes, exact_answer_key, majority_vote, majority_vote_accuracy

__all__ = [
    "ANALYSIS_COLUMNS", "CATEGORIES", "GREEDY", "GROUP_KEY", "JOINT", "LAYER_ONLY", "STANDARD_POOLS", "TEMPERATURE_ONLY",
    "AnswerFrequencyScorer", "Bootstrap", "Pool", "Scorer",
    "answer_codes", "best_of_n", "best_of_n_accuracy", "best_of_n_table", "bootstrap_ci", "bootstrap_table",
    "candidate_sets", "cell_accuracy_table", "cell_counts", "complementarity", "complete_problems", "complementarity_table",
    "cost_summary", "cost_table", "describe_configurations", "exact_answer_key", "grpo_signal", "grpo_table", "load_rollouts", "majority_vote",
    "majority_vote_accuracy", "majority_vote_table", "mean_logprob_scorer", "oracle", "oracle_table",
    "oracle_verifier", "pass_at_k", "pass_at_k_curve", "pass_at_k_table", "pool_counts",
    "relative_compute", "require_single_configuration", "rollout_files", "selection_budgets", "selection_rules", "selection_table",
]
