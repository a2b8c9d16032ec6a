"""The oracle table: greedy, temperature-only, layer-only and joint oracles per model, benchmark
and configuration, written as ``oracles.csv`` (plus ``.md`` and ``.tex``) with every accuracy in
percent and its bootstrap interval, the pool sizes, and the comparisons at equal rollout budgets
(see :func:`eglr.metrics.tables.oracle_table`).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.common import POOL_LABELS, with_intervals, write_table
from eglr.metrics.bootstrap import ci_columns
from eglr.metrics.io import GROUP_KEY

DISPLAY_METRICS = (
    "greedy", "temperature_only", "layer_only", "joint",
    "temperature_only_at_joint_budget", "joint_at_temperature_budget",
    "joint_minus_temperature_only_equal_budget",
)
DISPLAY_LABELS = {
    **POOL_LABELS,
    "n_problems": "Problems",
    "temperature_only_n": "n (temp.)",
    "layer_only_n": "n (layer)",
    "joint_n": "n (joint)",
    "joint_minus_temperature_only_equal_budget": "Joint - temp. (equal budget)",
}


def display_oracles(table: pd.DataFrame) -> pd.DataFrame:
    """The paper-style oracle table: value [interval] per pool, pool sizes, equal-budget gain."""
    columns = [*GROUP_KEY, "n_problems", "temperature_only_n", "layer_only_n", "joint_n"]
    shown = table[columns + ci_columns(DISPLAY_METRICS)]
    return with_intervals(shown, DISPLAY_METRICS, DISPLAY_LABELS)


def write_oracles(table: pd.DataFrame, out_dir: Path) -> list[Path]:
    return write_table(table, out_dir, "oracles", display_oracles(table),
                       caption="Oracle accuracy in percent per pool, with bootstrap intervals over problems.")
