"""Pools, oracles and pass@k against values worked out by hand."""
from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np
import pandas as pd
import pytest

from eglr.metrics import (
    GREEDY,
    JOINT,
    LAYER_ONLY,
    TEMPERATURE_ONLY,
    Pool,
    cell_counts,
    oracle,
    pass_at_k,
    pass_at_k_curve,
    pool_counts,
)


def frame(rows: list[tuple]) -> pd.DataFrame:
    """Rollouts from (problem, layer span, temperature, sample, correct) tuples."""
    data = pd.DataFrame(rows, columns=["problem_id", "layer_span", "temperature", "sample", "correct"])
    return data.assign(model="m", benchmark="b", configuration="")


def test_pass_at_k_matches_the_definition():
    # 5 rollouts, 2 correct: C(3,k)/C(5,k) is the chance k draws miss both.
    assert pass_at_k(5, 2, 1) == pytest.approx(2 / 5)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)
    assert pass_at_k(5, 2, 3) == pytest.approx(1 - 1 / 10)
    assert pass_at_k(5, 2, 4) == pytest.approx(1.0)  # only 3 wrong ones: 4 draws must hit
    assert pass_at_k(5, 0, 5) == 0.0
    n, c, k = np.array([4, 10, 1]), np.array([1, 3, 1]), np.array([2, 5, 1])
    assert pass_at_k(n, c, k) == pytest.approx([1 - comb(3, 2) / comb(4, 2), 1 - comb(7, 5) / comb(10, 5), 1.0])


def test_pass_at_k_equals_the_fraction_of_subsets_with_a_correct_rollout():
    outcomes = [1, 0, 0, 1, 0, 0, 0]
    for k in range(1, len(outcomes) + 1):
        subsets = list(combinations(outcomes, k))
        assert pass_at_k(7, 2, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))


@pytest.mark.parametrize("n, c, k", [(3, 1, 4), (3, 1, 0), (3, 4, 1), (3, -1, 1)])
def test_pass_at_k_rejects_impossible_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_pass_at_k_curve_clips_k_at_each_problems_size_and_blanks_empty_problems():
    curve = pass_at_k_curve(np.array([2, 4, 0]), np.array([1, 1, 0]), 3)
    assert curve[0] == pytest.approx([0.5, 1.0, 1.0])  # k = 3 > n = 2 reads as pass@2
    assert curve[1] == pytest.approx([0.25, 0.5, 0.75])
    assert np.isnan(curve[2]).all()


def test_oracle_is_any_correct_and_nan_without_rollouts():
    assert list(oracle(np.array([3, 2, 0]), np.array([1, 0, 0]))[:2]) == [1.0, 0.0]
    assert np.isnan(oracle(np.array([0]), np.array([0]))[0])


GRID = frame([
    # problem, L, T, sample, correct: layer span 0 has 3 samples at T=0.7, layer span 2 has 2.
    ("p", 0, 0.0, 0, False), ("p", 2, 0.0, 0, True),
    ("p", 0, 0.7, 0, False), ("p", 0, 0.7, 1, False), ("p", 0, 0.7, 2, True),
    ("p", 2, 0.7, 0, False), ("p", 2, 0.7, 1, False),
])


def test_standard_pools_select_their_cells():
    assert GREEDY.mask(GRID).tolist() == [True] + [False] * 6
    assert TEMPERATURE_ONLY.mask(GRID).tolist() == [True, False, True, True, True, False, False]
    assert LAYER_ONLY.mask(GRID).tolist() == [True, True] + [False] * 5


def test_joint_pool_is_balanced_across_layer_spans():
    # At T=0.7 the smallest layer span has 2 samples, so sample 2 of layer span 0 is left out.
    assert JOINT.mask(GRID).tolist() == [True, True, True, True, False, True, True]
    assert Pool("all").mask(GRID).all()


def test_pool_counts_sum_the_pools_cells_and_keep_problems_without_rollouts():
    rollouts = pd.concat([GRID, frame([("q", 2, 0.7, 0, True)])], ignore_index=True)
    counts = pool_counts(rollouts, TEMPERATURE_ONLY).set_index("problem_id")
    assert counts.loc["p", ["n", "c"]].tolist() == [4, 1]
    assert counts.loc["q", ["n", "c"]].tolist() == [0, 0]  # q has no layer-span-0 rollout
    joint = pool_counts(rollouts, JOINT).set_index("problem_id")
    assert joint.loc["p", ["n", "c"]].tolist() == [6, 1]


def test_cell_counts_per_problem_and_cell():
    counts = cell_counts(GRID).set_index(["layer_span", "temperature"])
    assert counts.loc[(0, 0.7), ["n", "c"]].tolist() == [3, 1]
    assert counts.loc[(2, 0.0), ["n", "c"]].tolist() == [1, 1]


def test_pool_rejects_bad_definitions():
    with pytest.raises(ValueError, match="layer spans"):
        Pool("bad", layer_spans=(-1,))
    with pytest.raises(ValueError, match="temperatures"):
        Pool("bad", temperatures=())
    with pytest.raises(ValueError, match="name"):
        Pool("")


def test_complete_problems_leaves_out_problems_with_part_of_their_grid() -> None:
    from eglr.metrics import complete_problems

    grid = [(0, 0.0, 0), (0, 0.7, 0), (0, 0.7, 1), (2, 0.0, 0), (2, 0.7, 0)]
    rows = [(problem, *cell, True) for problem in ("a", "b") for cell in grid]
    rows += [("c", *cell, True) for cell in grid[:3]]                   # a stopped job: span 2 not yet written
    rows += [("d", *cell, True) for cell in grid if cell != (0, 0.7, 1)]  # one sample short in a cell
    rollouts = frame(rows)
    other = frame([(problem, *cell, False) for problem in ("c",) for cell in grid[:1]]).assign(configuration="x")
    kept = complete_problems(pd.concat([rollouts, other], ignore_index=True))
    assert sorted(kept.loc[kept["configuration"] == "", "problem_id"].unique()) == ["a", "b"]
    assert list(kept.loc[kept["configuration"] == "x", "problem_id"].unique()) == ["c"]  # its own grid: complete
    assert kept.attrs["partial_problems"] == 2
    assert len(kept) == 2 * len(grid) + 1
    assert complete_problems(frame(rows[:10])).attrs["partial_problems"] == 0
