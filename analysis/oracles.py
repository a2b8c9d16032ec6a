"""Oracle table: greedy, temperature-only, layer-only and joint oracles per model and benchmark.

    python analysis/oracles.py --rollouts results/rollouts --out results/analysis

writes ``oracles.csv`` (plus ``.md`` and ``.tex``): one row per (model, benchmark)
with every accuracy in percent and its bootstrap interval, the pool sizes, and
the comparisons at equal rollout budgets (see ``eglr.metrics.tables.oracle_table``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

from analysis.common import POOL_LABELS, add_common_arguments, bootstrap_settings, load, with_intervals, write_table  # noqa: E402
from eglr.metrics import Bootstrap, oracle_table  # noqa: E402
from eglr.metrics.bootstrap import ci_columns  # noqa: E402

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
    columns = ["model", "benchmark", "n_problems", "temperature_only_n", "layer_only_n", "joint_n"]
    shown = table[columns + ci_columns(DISPLAY_METRICS)]
    return with_intervals(shown, DISPLAY_METRICS, DISPLAY_LABELS)


def write_oracles(table: pd.DataFrame, out_dir: Path) -> list[Path]:
    return write_table(table, out_dir, "oracles", display_oracles(table),
                       caption="Oracle accuracy in percent per pool, with bootstrap intervals over problems.")


def compute(rollouts: pd.DataFrame, bootstrap: Bootstrap) -> pd.DataFrame:
    return oracle_table(rollouts, bootstrap)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    table = compute(load(args.rollouts), bootstrap_settings(args))
    for path in write_oracles(table, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
