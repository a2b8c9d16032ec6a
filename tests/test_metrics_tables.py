"""The paper tables on a five-problem rollout set whose every number is worked out by hand.

Grid: layer spans {0, 2} x temperatures {0, 0.7}; 2 samples per cell at T=0.7 and 3
at layer span 0 (the temperature-only baseline). Per problem, the rollouts are, in
canonical order (L0 T0, L2 T0, L0 T.7 s0/s1/s2, L2 T.7 s0/s1), correct where 1:

    p1  1 0 0 0 0 0 0      temperature-only pool (L0: 4 rollouts)   p1 p2 p5 solved
    p2  0 1 0 0 1 0 0      layer-only pool (T0: 2 rollouts)         p1 p2 p4 solved
    p3  0 0 0 0 0 0 1      joint pool (balanced: 6 rollouts, the    every problem solved,
    p4  0 1 0 0 0 0 0        L0 T.7 sample 2 left out)              1 correct rollout each
    p5  0 0 1 0 0 0 0
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eglr.metrics import (
    Bootstrap,
    best_of_n_table,
    cell_accuracy_table,
    complementarity_table,
    grpo_table,
    majority_vote_table,
    oracle_table,
    pass_at_k_table,
    selection_budgets,
)
from eglr.metrics.tables import SAMPLING_POOLS

CELLS = [(0, 0.0, 0), (2, 0.0, 0), (0, 0.7, 0), (0, 0.7, 1), (0, 0.7, 2), (2, 0.7, 0), (2, 0.7, 1)]
OUTCOMES = {
    "p1": [1, 0, 0, 0, 0, 0, 0],
    "p2": [0, 1, 0, 0, 1, 0, 0],
    "p3": [0, 0, 0, 0, 0, 0, 1],
    "p4": [0, 1, 0, 0, 0, 0, 0],
    "p5": [0, 0, 1, 0, 0, 0, 0],
}
FAST = Bootstrap(n_resamples=200)


@pytest.fixture(scope="module")
def rollouts() -> pd.DataFrame:
    rows = []
    for problem, outcomes in OUTCOMES.items():
        for index, ((span, temperature, sample), correct) in enumerate(zip(CELLS, outcomes)):
            rows.append({
                "model": "m", "benchmark": "b", "configuration": "", "problem_id": problem, "layer_span": span,
                "temperature": temperature, "sample": sample, "correct": bool(correct),
                # Every answer distinct: votes always tie and go to the earliest rollout.
                "extracted": "42" if correct else f"wrong-{problem}-{index}",
                # The model is confident in the right answers, except one wrong rollout of p1.
                "mean_logprob": -0.5 if correct else (-0.4 if (problem, index) == ("p1", 2) else -1.0),
            })
    return pd.DataFrame(rows)


def test_oracle_table(rollouts):
    row = oracle_table(rollouts, FAST).iloc[0]
    assert (row["n_problems"], row["temperature_only_n"], row["layer_only_n"], row["joint_n"]) == (5, 4, 2, 6)
    assert row["greedy"] == pytest.approx(20.0)
    assert row["temperature_only"] == pytest.approx(60.0)
    assert row["layer_only"] == pytest.approx(60.0)
    assert row["joint"] == pytest.approx(100.0)
    # The temperature pool (4) is smaller than the joint pool (6): no pass@6 for it.
    assert np.isnan(row["temperature_only_at_joint_budget"])
    # Joint pool, 1 correct of 6: pass@4 = 1 - C(5,4)/C(6,4) = 2/3, pass@2 = 1 - C(5,2)/C(6,2) = 1/3.
    assert row["joint_at_temperature_budget"] == pytest.approx(200 / 3)
    assert row["joint_at_layer_budget"] == pytest.approx(100 / 3)
    # At 4 rollouts: joint 2/3 each minus temperature-only (1, 1, 0, 0, 1) -> mean 1/15.
    assert row["joint_minus_temperature_only_equal_budget"] == pytest.approx(100 / 15)
    # At 2 rollouts: joint 1/3 each minus layer-only (1, 1, 0, 1, 0) -> mean -4/15.
    assert row["joint_minus_layer_only_equal_budget"] == pytest.approx(-400 / 15)
    for metric in ("greedy", "joint", "joint_minus_layer_only_equal_budget"):
        assert row[f"{metric}_ci_low"] <= row[metric] <= row[f"{metric}_ci_high"]


def test_oracle_table_fills_temperature_at_joint_budget_when_that_pool_is_larger(rollouts):
    # A fourth sample at layer span 0, T=0.7 (correct for p3 only) makes the
    # temperature pool 5 rollouts, still smaller than the joint pool.
    extra = rollouts.loc[rollouts["sample"] == 2].assign(sample=3, correct=False)
    extra.loc[extra["problem_id"] == "p3", "correct"] = True
    row = oracle_table(pd.concat([rollouts, extra], ignore_index=True), FAST).iloc[0]
    assert row["temperature_only_n"] == 5 and row["joint_n"] == 6
    assert np.isnan(row["temperature_only_at_joint_budget"])
    # A fifth (wrong) one makes it 6, as large as the joint pool.
    more = pd.concat([rollouts, extra, extra.assign(sample=4, correct=False)], ignore_index=True)
    row = oracle_table(more, FAST).iloc[0]
    # Temperature pool: 6 rollouts, pass@6 = its oracle (p1, p2, p3, p5 solved).
    assert row["temperature_only_n"] == 6 and row["temperature_only_at_joint_budget"] == pytest.approx(80.0)


def test_missing_rollouts_are_left_out_not_counted_wrong(rollouts):
    # Drop p4's greedy rollout and p3's only correct one (L2, T.7, sample 1).
    cell = list(zip(rollouts["problem_id"], rollouts["layer_span"], rollouts["temperature"], rollouts["sample"]))
    dropped = [key in {("p4", 0, 0.0, 0), ("p3", 2, 0.7, 1)} for key in cell]
    row = oracle_table(rollouts.loc[~pd.Series(dropped)], FAST).iloc[0]
    assert row["n_problems"] == 5 and row["joint_n"] == 6
    assert row["greedy"] == pytest.approx(25.0)  # p4 has no greedy rollout: 1 of 4
    assert row["joint"] == pytest.approx(80.0)
    # pass@4: 2/3 for p1, p2, p5 (1 of 6 correct), 0 for p3, 1 - C(4,4)/C(5,4) = 4/5 for p4.
    assert row["joint_at_temperature_budget"] == pytest.approx(100 * (3 * 2 / 3 + 4 / 5) / 5)


def test_cell_accuracy_table(rollouts):
    table = cell_accuracy_table(rollouts, FAST).set_index(["layer_span", "temperature"])
    assert table.loc[(0, 0.0), "accuracy"] == pytest.approx(20.0)
    assert table.loc[(2, 0.0), "accuracy"] == pytest.approx(40.0)
    assert table.loc[(0, 0.7), "accuracy"] == pytest.approx(100 * 2 / 15)  # p2, p5: 1 of 3 each
    assert table.loc[(2, 0.7), "accuracy"] == pytest.approx(10.0)
    assert table["n_rollouts"].tolist() == [5, 15, 5, 10]


def test_pass_at_k_table(rollouts):
    table = pass_at_k_table(rollouts, bootstrap=FAST).set_index(["pool", "k"])["pass_at_k"]
    assert table[("temperature_only", 1)] == pytest.approx(15.0)  # 3 problems at 1/4
    assert table[("temperature_only", 2)] == pytest.approx(30.0)  # 1 - C(3,2)/C(4,2) = 1/2
    assert table[("temperature_only", 4)] == pytest.approx(60.0)
    assert table[("layer_only", 1)] == pytest.approx(30.0)
    assert table[("joint", 1)] == pytest.approx(100 / 6)
    assert table[("joint", 6)] == pytest.approx(100.0)
    assert ("temperature_only", 5) not in table.index


def test_complementarity_table(rollouts):
    row = complementarity_table(rollouts, FAST).iloc[0]
    assert (row["n_both"], row["n_only_layer"], row["n_only_temperature"], row["n_neither"]) == (2, 1, 1, 1)
    assert (row["both"], row["only_layer"], row["neither"]) == pytest.approx((40.0, 20.0, 20.0))


def test_grpo_table(rollouts):
    table = grpo_table(rollouts, group_sizes=(2, 4), bootstrap=FAST).set_index(["pool", "group_size"])
    # Joint, 1 correct in 6: a pair is mixed when it holds it (5 of 15 pairs).
    assert table.loc[("joint", 2), "mixed_groups"] == pytest.approx(100 / 3)
    assert table.loc[("joint", 2), "reward_variance"] == pytest.approx(1 / 12)
    assert table.loc[("joint", 4), "mixed_groups"] == pytest.approx(200 / 3)
    assert table.loc[("temperature_only", 2), "mixed_groups"] == pytest.approx(30.0)
    assert table.loc[("temperature_only", 4), "reward_variance"] == pytest.approx(9 / 80)
    assert table.loc[("layer_only", 2), "mixed_groups"] == pytest.approx(60.0)
    assert ("layer_only", 4) not in table.index  # 2 rollouts cannot fill a group of 4


def test_selection_budgets(rollouts):
    budgets = selection_budgets(rollouts, SAMPLING_POOLS)
    assert budgets[["pool", "budget", "k"]].values.tolist() == [
        ["temperature_only", "full", 4], ["layer_only", "full", 2], ["joint", "full", 6], ["joint", "equal", 4],
    ]


def test_majority_vote_table(rollouts):
    table = majority_vote_table(rollouts, key=str.strip, n_draws=3000, bootstrap=FAST)
    votes = table.set_index(["pool", "budget"])["majority_vote"]
    # All answers differ, so the earliest rollout (greedy) wins: only p1 is right.
    assert votes[("temperature_only", "full")] == pytest.approx(20.0)
    assert votes[("joint", "full")] == pytest.approx(20.0)
    # 4 of the 6 joint rollouts: p1 right when greedy is drawn (2/3); p5 when its
    # rollout at position 1 is drawn and greedy is not (4 of 15 subsets).
    assert votes[("joint", "equal")] == pytest.approx(100 * (2 / 3 + 4 / 15) / 5, abs=1.5)


def test_best_of_n_table(rollouts):
    table = best_of_n_table(rollouts, key=str.strip, n_draws=3000, bootstrap=FAST).set_index(["pool", "budget"])
    assert table["oracle"].loc[[("temperature_only", "full"), ("layer_only", "full"), ("joint", "full")]].tolist() \
        == pytest.approx([60.0, 60.0, 100.0])
    assert table.loc[("joint", "equal"), "oracle"] == pytest.approx(200 / 3, abs=1.5)
    assert table.loc[("joint", "full"), "answer_frequency"] == pytest.approx(20.0)
    # mean log-prob: p1's confident wrong rollout (L0 T.7) beats its greedy answer.
    assert table.loc[("temperature_only", "full"), "mean_logprob"] == pytest.approx(40.0)
    assert table.loc[("layer_only", "full"), "mean_logprob"] == pytest.approx(60.0)
    assert table.loc[("joint", "full"), "mean_logprob"] == pytest.approx(80.0)
