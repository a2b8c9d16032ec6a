"""What the re-applications did, per layer span: how often gated steps converged, and how far apart
the last two iterates were when a row stopped.

Each record carries its rollout's gated steps, re-applications, the gated steps whose convergence
test passed within ``k_max`` (``num_converged``) and the mean KL between the last two iterates at
the stopping re-application (``mean_stop_kl``). Pooled over a group's rollouts, weighting each by
its gated steps:

    converged fraction = sum(num_converged) / sum(num_gated)
    mean stop KL       = sum(mean_stop_kl * num_gated) / sum(num_gated)

A group without gated steps (layer span 0) has neither. ``length_stopped`` is the share of
rollouts that ran into ``max_new_tokens`` (a budget too small for the model's answers shows here).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

CONVERGENCE_FIELDS = ("num_tokens", "num_gated", "num_reapplications", "num_converged", "mean_stop_kl",
                      "finish_reason")


def convergence_summary(
    rollouts: pd.DataFrame, by: Sequence[str] = ("model", "benchmark", "configuration", "layer_span")
) -> pd.DataFrame:
    """Per group: rollouts, gated steps, re-applications per gated step, converged fraction, mean stop
    KL, share of rollouts stopped by the length limit."""
    missing = [name for name in CONVERGENCE_FIELDS if name not in rollouts]
    if missing:
        raise ValueError(f"the convergence summary needs the rollout fields {missing}")
    gated = rollouts["num_gated"].to_numpy(dtype=float)
    frame = rollouts[list(by)].copy()
    frame["num_gated"] = gated
    frame["num_reapplications"] = rollouts["num_reapplications"].to_numpy(dtype=float)
    frame["num_converged"] = pd.to_numeric(rollouts["num_converged"]).to_numpy(dtype=float)
    stop_kl = pd.to_numeric(rollouts["mean_stop_kl"]).to_numpy(dtype=float)
    frame["weighted_stop_kl"] = np.where(gated > 0, stop_kl * gated, 0.0)
    frame["length_stopped"] = (rollouts["finish_reason"].astype(str) == "length").to_numpy(dtype=float)
    frame["num_tokens"] = rollouts["num_tokens"].to_numpy(dtype=float)
    summary = frame.groupby(list(by), observed=True, sort=True).agg(
        n_rollouts=("num_tokens", "size"),
        mean_tokens=("num_tokens", "mean"),
        length_stopped=("length_stopped", "mean"),
        gated_steps=("num_gated", "sum"),
        reapplications=("num_reapplications", "sum"),
        converged=("num_converged", lambda values: values.sum(min_count=1)),
        weighted_stop_kl=("weighted_stop_kl", "sum"),
    ).reset_index()
    has_gated = summary["gated_steps"] > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        summary["reapplications_per_gated_step"] = np.where(
            has_gated, summary["reapplications"] / summary["gated_steps"], np.nan)
        summary["converged_fraction"] = np.where(has_gated, summary["converged"] / summary["gated_steps"], np.nan)
        summary["mean_stop_kl"] = np.where(has_gated, summary["weighted_stop_kl"] / summary["gated_steps"], np.nan)
    return summary[[*by, "n_rollouts", "mean_tokens", "length_stopped", "gated_steps",
                    "reapplications_per_gated_step", "converged_fraction", "mean_stop_kl"]]
