"""Decode cost of EGLR per (layer span, temperature) cell.

Cost model, in decoder-layer-equivalents. A plain decode step runs the model's
N decoder layers and the lm_head, which is counted as ``lm_head_cost`` layers
(a configurable number: for a 3B model with a 150k vocabulary the lm_head has
roughly as many multiply-adds as four decoder layers). Each EGLR
re-application runs the top L layers on the last hidden state and the
lm_head again to test convergence. For one rollout of T generated tokens with
I re-applications in total,

    relative compute = (T (N + h) + I (L + h)) / (T (N + h)),   h = lm_head_cost,

i.e. 1.0 for a plain decode. Prompt prefill and attention's growth with context
length are left out; both are the same with and without recursion. A rollout
with no generated tokens counts as 1.0.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

COST_FIELDS = ("num_tokens", "num_gated", "num_reapplications", "num_layers")
DEFAULT_LM_HEAD_COST = 1.0


def relative_compute(
    num_tokens: np.ndarray,
    num_reapplications: np.ndarray,
    layer_span: np.ndarray,
    num_layers: np.ndarray,
    lm_head_cost: float = DEFAULT_LM_HEAD_COST,
) -> np.ndarray:
    """Compute of each rollout relative to a plain decode of the same tokens (see module doc)."""
    if lm_head_cost < 0:
        raise ValueError(f"lm_head_cost must be >= 0, got {lm_head_cost}")
    tokens = np.asarray(num_tokens, dtype=float)
    plain = tokens * (np.asarray(num_layers, dtype=float) + lm_head_cost)
    extra = np.asarray(num_reapplications, dtype=float) * (np.asarray(layer_span, dtype=float) + lm_head_cost)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tokens > 0, 1.0 + extra / plain, 1.0)


def missing_cost_fields(rollouts: pd.DataFrame) -> list[str]:
    """The fields cost needs that the rollouts lack (absent or all null; e.g. old files)."""
    return [name for name in COST_FIELDS if name not in rollouts or rollouts[name].isna().all()]


def cost_summary(
    rollouts: pd.DataFrame,
    by: Sequence[str] = ("model", "benchmark", "layer_span", "temperature"),
    lm_head_cost: float = DEFAULT_LM_HEAD_COST,
) -> pd.DataFrame:
    """Per group: rollouts, mean generated tokens, gated-step rate (gated steps over
    all steps, pooled over rollouts), mean re-applications per rollout,
    re-applications per gated step, and mean relative compute per rollout."""
    missing = missing_cost_fields(rollouts)
    if missing:
        raise ValueError(f"cost needs the rollout fields {missing}, which are missing")
    incomplete = rollouts[list(COST_FIELDS)].isna().any(axis=1)
    if incomplete.any():
        raise ValueError(f"{int(incomplete.sum())} rollouts have null {', '.join(COST_FIELDS)} values")
    fields = rollouts[list(by)].copy()
    for name in COST_FIELDS[:3]:
        fields[name] = rollouts[name].to_numpy(dtype=float)
    fields["relative_compute"] = relative_compute(
        fields["num_tokens"], fields["num_reapplications"], rollouts["layer_span"],
        rollouts["num_layers"], lm_head_cost,
    )
    grouped = fields.groupby(list(by), observed=True, sort=True)
    summary = grouped.agg(
        n_rollouts=("num_tokens", "size"),
        mean_tokens=("num_tokens", "mean"),
        total_tokens=("num_tokens", "sum"),
        total_gated=("num_gated", "sum"),
        mean_reapplications=("num_reapplications", "mean"),
        total_reapplications=("num_reapplications", "sum"),
        relative_compute=("relative_compute", "mean"),
    ).reset_index()
    with np.errstate(invalid="ignore", divide="ignore"):
        summary["gated_rate"] = summary["total_gated"] / summary["total_tokens"]
        summary["reapplications_per_gated_step"] = np.where(
            summary["total_gated"] > 0, summary["total_reapplications"] / summary["total_gated"], 0.0
        )
    return summary[
        [*by, "n_rollouts", "mean_tokens", "gated_rate", "mean_reapplications",
         "reapplications_per_gated_step", "relative_compute"]
    ]
