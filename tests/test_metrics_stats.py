"""Bootstrap intervals, GRPO expectations and the cost model."""
from __future__ import annotations

from itertools import combinations, product

import numpy as np
import pandas as pd
import pytest

from eglr.metrics import bootstrap_ci, bootstrap_table, cost_summary, grpo_signal, relative_compute


def test_constant_metrics_have_degenerate_intervals():
    estimate, low, high = bootstrap_ci(np.full((30, 2), [0.25, 1.0]))
    assert estimate == pytest.approx([0.25, 1.0]) and low == pytest.approx([0.25, 1.0])
    assert high == pytest.approx([0.25, 1.0])


def test_interval_width_matches_the_normal_approximation():
    # 400 problems, half solved: the standard error is sqrt(0.25 / 400) = 0.025, so
    # the 95% interval is about 0.5 +- 0.049.
    values = np.tile([0.0, 1.0], 200)
    estimate, low, high = bootstrap_ci(values, n_resamples=2000, seed=1)
    assert estimate == 0.5
    assert 0.04 < estimate - low < 0.06 and 0.04 < high - estimate < 0.06


def test_nan_marks_problems_a_metric_does_not_cover():
    estimate, low, high = bootstrap_ci(np.array([[1.0, 1.0], [np.nan, 0.0], [0.0, 0.0]]), seed=3)
    assert estimate == pytest.approx([0.5, 1 / 3])
    assert 0.0 <= low[0] <= high[0] <= 1.0


def test_same_seed_same_interval_and_one_problem_is_degenerate():
    values = np.random.default_rng(0).random(50)
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
    assert bootstrap_ci(np.array([0.3])) == pytest.approx((0.3, 0.3, 0.3))


def test_bootstrap_rejects_bad_settings():
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(np.ones(3), confidence=1.5)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci(np.ones(3), n_resamples=0)


def test_bootstrap_table_pairs_metrics_and_items_within_a_group():
    per_problem = pd.DataFrame({
        "model": "m", "benchmark": "b", "problem_id": list("abcdab"),
        "cell": [1, 1, 1, 1, 2, 2], "x": [1.0, 0.0, 1.0, 0.0, 1.0, 1.0],
    })
    per_problem["y"] = per_problem["x"]
    table = bootstrap_table(per_problem, ["model", "benchmark"], ["x", "y"], item=["cell"], n_resamples=200)
    assert table["cell"].tolist() == [1, 2] and table["n_problems"].tolist() == [4, 2]
    assert table["x"].tolist() == [0.5, 1.0]
    # Identical metrics resampled together give identical intervals.
    assert table["x_ci_low"].tolist() == table["y_ci_low"].tolist()
    with pytest.raises(ValueError, match="several rows"):
        bootstrap_table(pd.concat([per_problem, per_problem]), ["model"], ["x"], item=["cell"])


def enumerate_groups(n: int, c: int, group_size: int, replacement: bool) -> tuple[float, float]:
    """P(mixed group) and E[population variance] by listing every possible group."""
    rewards = [1.0] * c + [0.0] * (n - c)
    groups = (product(rewards, repeat=group_size) if replacement
              else combinations(rewards, group_size))
    groups = [np.array(group) for group in groups]
    return (np.mean([0 < group.sum() < group_size for group in groups]),
            np.mean([group.var() for group in groups]))


@pytest.mark.parametrize("n, c, group_size", [(4, 2, 2), (6, 1, 3), (5, 5, 2), (7, 3, 4), (3, 0, 1)])
@pytest.mark.parametrize("replacement", [False, True])
def test_grpo_signal_equals_the_average_over_all_groups(n, c, group_size, replacement):
    mixed, variance = grpo_signal(np.array([n]), np.array([c]), group_size, replacement)
    expected_mixed, expected_variance = enumerate_groups(n, c, group_size, replacement)
    assert mixed[0] == pytest.approx(expected_mixed)
    assert variance[0] == pytest.approx(expected_variance)


def test_grpo_hand_values_and_small_pools():
    # Pairs from {1, 1, 0, 0}: 4 of the 6 are mixed, each with variance 1/4.
    mixed, variance = grpo_signal(np.array([4, 3, 0]), np.array([2, 1, 0]), 2)
    assert mixed[0] == pytest.approx(2 / 3) and variance[0] == pytest.approx(1 / 6)
    mixed, variance = grpo_signal(np.array([3, 0]), np.array([1, 0]), 4)
    assert np.isnan(mixed).all() and np.isnan(variance).all()  # fewer rollouts than the group
    with pytest.raises(ValueError, match="group_size"):
        grpo_signal(np.array([4]), np.array([1]), 0)


def test_relative_compute_counts_extra_layer_and_lm_head_passes():
    # 100 tokens of a 24-layer model (lm_head = 1 layer): 2500 units; 10 extra
    # iterations of the top 4 layers + lm_head: 50 more.
    assert relative_compute(100, 10, 4, 24) == pytest.approx(2550 / 2500)
    assert relative_compute(100, 10, 4, 24, lm_head_cost=4.0) == pytest.approx(1 + 80 / 2800)
    assert relative_compute(0, 0, 4, 24) == 1.0
    with pytest.raises(ValueError, match="lm_head_cost"):
        relative_compute(1, 1, 1, 1, lm_head_cost=-1)


def test_cost_summary_pools_gated_steps_over_tokens():
    rollouts = pd.DataFrame({
        "model": "m", "benchmark": "b", "layer_span": [2, 2, 0], "temperature": 0.0,
        "num_tokens": [100, 300, 50], "num_gated": [10, 10, 0], "num_reapplications": [20, 0, 0], "num_layers": 8,
    })
    summary = cost_summary(rollouts).set_index("layer_span")
    assert summary.loc[2, "gated_rate"] == pytest.approx(20 / 400)
    assert summary.loc[2, "mean_tokens"] == 200 and summary.loc[2, "mean_reapplications"] == 10
    assert summary.loc[2, "reapplications_per_gated_step"] == pytest.approx(1.0)
    # Mean over rollouts of 1 + I (L + 1) / (T (N + 1)): (1 + 60/900 + 1) / 2.
    assert summary.loc[2, "relative_compute"] == pytest.approx((2 + 60 / 900) / 2)
    assert summary.loc[0, "relative_compute"] == 1.0 and summary.loc[0, "gated_rate"] == 0.0
    with pytest.raises(ValueError, match="num_layers"):
        cost_summary(rollouts.drop(columns="num_layers"))
