"""The convergence summary pools gated steps over rollouts, by hand."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from eglr.metrics.convergence import convergence_summary


def test_pooled_by_gated_steps():
    rollouts = pd.DataFrame({
        "model": "m", "benchmark": "b", "configuration": "",
        "layer_span": [0, 0, 4, 4, 4],
        "num_tokens": [100, 200, 100, 50, 80],
        "num_gated": [0, 0, 10, 30, 0],
        "num_reapplications": [0, 0, 40, 90, 0],
        "num_converged": [0, 0, 0, 15, 0],
        "mean_stop_kl": [None, None, 0.2, 0.1, None],
        "finish_reason": ["eos", "length", "eos", "length", "length"],
    })
    summary = convergence_summary(rollouts).set_index("layer_span")
    assert summary.loc[0, "n_rollouts"] == 2 and summary.loc[0, "length_stopped"] == 0.5
    assert math.isnan(summary.loc[0, "converged_fraction"]) and math.isnan(summary.loc[0, "mean_stop_kl"])
    assert summary.loc[4, "gated_steps"] == 40
    assert summary.loc[4, "reapplications_per_gated_step"] == pytest.approx(130 / 40)
    assert summary.loc[4, "converged_fraction"] == pytest.approx(15 / 40)
    assert summary.loc[4, "mean_stop_kl"] == pytest.approx((0.2 * 10 + 0.1 * 30) / 40)
    assert summary.loc[4, "length_stopped"] == pytest.approx(2 / 3)


def test_missing_fields_are_named():
    with pytest.raises(ValueError, match="num_converged"):
        convergence_summary(pd.DataFrame({"model": [], "num_tokens": []}))
