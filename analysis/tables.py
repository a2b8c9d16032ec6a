"""Every table of the analysis, as CSV (full precision) and as Markdown and LaTeX for reading.

Tables: ``configurations`` (the settings of each configuration in the input),
``oracles`` (pools per model, benchmark and configuration), ``cells`` (L x T accuracy),
``cost`` and ``cost_by_span`` (gating rate, re-applications, relative compute),
``convergence`` (per layer span: how often gated steps converged, the KL at the stop, length stops),
``complementarity``, ``majority_vote``, ``best_of_n``, ``grpo``, and ``pass_at_k``
(CSV only; the figures plot it).
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.common import (
    CATEGORY_LABELS,
    POOL_LABELS,
    answer_key,
    benchmark_label,
    bootstrap_settings,
    format_ci,
    named_columns,
    with_intervals,
    write_table,
)
from analysis.oracles import write_oracles
from eglr.metrics import (
    CATEGORIES,
    Bootstrap,
    cell_accuracy_table,
    complementarity_table,
    cost_summary,
    cost_table,
    describe_configurations,
    grpo_table,
    oracle_table,
    pass_at_k_table,
    selection_rules,
    selection_table,
)
from eglr.metrics.bootstrap import ci_columns
from eglr.metrics.convergence import convergence_summary
from eglr.metrics.io import GROUP_KEY, setting_text
from eglr.metrics.cost import DEFAULT_LM_HEAD_COST, missing_cost_fields
from eglr.metrics.sampling import DEFAULT_DRAWS
from eglr.metrics.voting import AnswerKey


@dataclass(frozen=True)
class Options:
    """Settings of the whole analysis (the command-line options of the scripts)."""

    bootstrap: Bootstrap = Bootstrap()
    answer_key: AnswerKey | None = None  # None: eglr.grading.answer_key
    n_draws: int = DEFAULT_DRAWS
    lm_head_cost: float = DEFAULT_LM_HEAD_COST
    group_sizes: tuple[int, ...] = (4, 8, 16)


def table_builders(options: Options = Options()) -> dict[str, Callable[[pd.DataFrame], pd.DataFrame]]:
    """How each table is computed from the rollouts, by table name."""
    bootstrap = options.bootstrap

    def selection(rollouts: pd.DataFrame) -> pd.DataFrame:
        rules = selection_rules(rollouts, options.answer_key)
        return selection_table(rollouts, rules, n_draws=options.n_draws, bootstrap=bootstrap)

    return {
        "configurations": describe_configurations,
        "oracles": lambda rollouts: oracle_table(rollouts, bootstrap),
        "cells": lambda rollouts: cell_accuracy_table(rollouts, bootstrap),
        "pass_at_k": lambda rollouts: pass_at_k_table(rollouts, bootstrap=bootstrap),
        "complementarity": lambda rollouts: complementarity_table(rollouts, bootstrap),
        "selection": selection,
        "grpo": lambda rollouts: grpo_table(rollouts, group_sizes=options.group_sizes, bootstrap=bootstrap),
        "cost": lambda rollouts: cost_table(rollouts, options.lm_head_cost),
        "cost_by_span": lambda rollouts: cost_summary(rollouts, ["model", "configuration", "layer_span"],
                                                     options.lm_head_cost),
        "convergence": lambda rollouts: convergence_summary(rollouts, [*GROUP_KEY, "layer_span"]),
    }


COST_TABLES = ("cost", "cost_by_span")
BEST_OF_N_SCORERS = ("oracle", "answer_frequency", "mean_logprob")


def build_tables(rollouts: pd.DataFrame, options: Options = Options()) -> dict[str, pd.DataFrame]:
    """All tables, by name. The cost tables are left out when the rollouts lack the
    token and re-application counts they need."""
    skip = (*COST_TABLES, "convergence") if missing_cost_fields(rollouts) else ()
    tables = {name: build(rollouts) for name, build in table_builders(options).items() if name not in skip}
    return split_selection(tables)


def split_selection(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Majority vote and best-of-N share their candidate sets, so they are computed as
    one ``selection`` table; this splits it into ``majority_vote`` and ``best_of_n``."""
    tables = dict(tables)
    selection = tables.pop("selection")
    key = [*GROUP_KEY, "pool", "budget", "k", "n_problems"]
    scorers = [name for name in BEST_OF_N_SCORERS if name in selection]
    tables["majority_vote"] = selection[key + ci_columns(["majority_vote"])]
    tables["best_of_n"] = selection[key + ci_columns(scorers)]
    return tables


def display_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """Accuracy grid: a row per (model, benchmark, layer span), a column per temperature."""
    grid = cells.assign(
        column=[("T=0 (greedy)" if t == 0 else f"T={t:g}") for t in cells["temperature"]],
        benchmark=cells["benchmark"].astype(str).map(benchmark_label),
        model=cells["model"].astype(str),
    )
    order = list(dict.fromkeys(grid.sort_values("temperature")["column"]))
    wide = grid.pivot_table(index=[*GROUP_KEY, "layer_span"], columns="column", values="accuracy",
                            sort=True, observed=True)
    wide = wide[order].reset_index()
    wide.columns.name = None
    return named_columns(wide, {"layer_span": "L"})


def display_cost(cost: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    shown = cost[by].copy()
    for name in by:
        if name in GROUP_KEY:
            shown[name] = cost[name].astype(str)
    if "benchmark" in shown:
        shown["benchmark"] = shown["benchmark"].map(benchmark_label)
    shown["Tokens"] = cost["mean_tokens"].round(0).astype("int64")
    shown["Gated steps (%)"] = (100 * cost["gated_rate"]).round(1)
    shown["Re-applications"] = cost["mean_reapplications"].round(1)
    shown["Re-applications / gated step"] = cost["reapplications_per_gated_step"].map(lambda value: f"{value:.2f}")
    shown["Relative compute"] = cost["relative_compute"].map(lambda value: f"{value:.3f}")
    return named_columns(shown, {"layer_span": "L", "temperature": "T"})


def display_complementarity(table: pd.DataFrame) -> pd.DataFrame:
    shown = table[[*GROUP_KEY, "n_problems"]].copy()
    shown["model"] = shown["model"].astype(str)
    shown["benchmark"] = shown["benchmark"].astype(str).map(benchmark_label)
    for category in CATEGORIES:
        shown[CATEGORY_LABELS[category]] = [
            f"{count} ({format_ci(value, low, high)})"
            for count, value, low, high in zip(
                table[f"n_{category}"], table[category], table[f"{category}_ci_low"], table[f"{category}_ci_high"]
            )
        ]
    return named_columns(shown, {"n_problems": "Problems"})


def display_selection(table: pd.DataFrame, metrics: list[str], labels: dict[str, str]) -> pd.DataFrame:
    shown = with_intervals(table, metrics, labels)
    shown["pool"] = shown["pool"].astype(str).map(lambda name: POOL_LABELS.get(name, name))
    return shown.rename(columns={"pool": "Pool", "budget": "Budget", "n_problems": "Problems"})


def display_grpo(table: pd.DataFrame) -> pd.DataFrame:
    shown = with_intervals(table, ["mixed_groups"], {"mixed_groups": "Mixed groups (%)"})
    shown["Reward variance"] = [
        format_ci(value, low, high, digits=3)
        for value, low, high in zip(table["reward_variance"], table["reward_variance_ci_low"],
                                    table["reward_variance_ci_high"])
    ]
    shown = shown.drop(columns=["reward_variance", "reward_variance_ci_low", "reward_variance_ci_high"])
    shown["pool"] = shown["pool"].astype(str).map(lambda name: POOL_LABELS.get(name, name))
    return shown.rename(columns={"pool": "Pool", "group_size": "G", "n_problems": "Problems"})


def display_convergence(table: pd.DataFrame) -> pd.DataFrame:
    """Per layer span: gated steps, re-applications each, converged share, stop KL, length stops."""
    shown = table[[*GROUP_KEY, "layer_span"]].copy()
    shown["benchmark"] = shown["benchmark"].astype(str).map(benchmark_label)
    shown["Rollouts"] = table["n_rollouts"]
    shown["Tokens"] = table["mean_tokens"].round(0).astype("int64")
    shown["Length-stopped (%)"] = (100 * table["length_stopped"]).round(1)
    shown["Gated steps"] = table["gated_steps"].astype("int64")
    dash = "–"
    shown["Re-applications / gated step"] = table["reapplications_per_gated_step"].map(
        lambda value: dash if pd.isna(value) else f"{value:.2f}")
    shown["Converged (%)"] = table["converged_fraction"].map(lambda value: dash if pd.isna(value) else f"{100 * value:.1f}")
    shown["Mean KL at the stop"] = table["mean_stop_kl"].map(lambda value: dash if pd.isna(value) else f"{value:.3g}")
    return named_columns(shown, {"layer_span": "L"})


def display_configurations(table: pd.DataFrame) -> pd.DataFrame:
    """Settings as they were recorded (0.001 stays 0.001; null for a missing value)."""
    shown = table.astype(object).where(table.notna(), None).map(setting_text)
    shown["benchmark"] = shown["benchmark"].map(benchmark_label)
    return named_columns(shown, {"n_rollouts": "Rollouts", "settings_hash": "Settings hash"})


def display_tables(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The formatted (Markdown / LaTeX) version of each table that has one."""
    from analysis.oracles import display_oracles

    shown = {
        "oracles": display_oracles(tables["oracles"]),
        "cells": display_cells(tables["cells"]),
        "complementarity": display_complementarity(tables["complementarity"]),
        "majority_vote": display_selection(tables["majority_vote"], ["majority_vote"],
                                           {"majority_vote": "Majority vote (%)"}),
        "best_of_n": display_selection(
            tables["best_of_n"], [name for name in BEST_OF_N_SCORERS if name in tables["best_of_n"]],
            {"oracle": "Oracle verifier (%)", "answer_frequency": "Answer frequency (%)",
             "mean_logprob": "Mean log-prob (%)"},
        ),
        "grpo": display_grpo(tables["grpo"]),
        "configurations": display_configurations(tables["configurations"]),
    }
    if "cost" in tables:
        shown["cost"] = display_cost(tables["cost"], [*GROUP_KEY, "layer_span", "temperature"])
        shown["cost_by_span"] = display_cost(tables["cost_by_span"], ["model", "configuration", "layer_span"])
    if "convergence" in tables:
        shown["convergence"] = display_convergence(tables["convergence"])
    return shown


CAPTIONS = {
    "configurations": "The configurations of the input: their settings hash, rollouts and recorded settings.",
    "cells": "Accuracy in percent per layer span L and temperature T (intervals in cells.csv).",
    "cost": "Decode cost per cell: relative compute counts decoder-layer passes over a plain decode.",
    "cost_by_span": "Decode cost per layer span, over all benchmarks and temperatures.",
    "convergence": "Re-applications per layer span: converged gated steps, KL between the last two iterates, "
                   "rollouts stopped by the length limit.",
    "complementarity": "Problems solved by each axis: count (percent [interval]).",
    "majority_vote": "Self-consistency accuracy in percent per pool and rollout budget.",
    "best_of_n": "Best-of-N accuracy in percent per scorer, pool and rollout budget.",
    "grpo": "GRPO signal: percent of problems with a mixed group, and mean group reward variance.",
}


def write_tables(tables: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """Write every table; returns the paths written."""
    shown = display_tables(tables)
    paths = write_oracles(tables["oracles"], out_dir)
    for name, table in tables.items():
        if name != "oracles":
            paths += write_table(table, out_dir, name, shown.get(name), CAPTIONS.get(name))
    return paths


def options_from_args(args: argparse.Namespace) -> Options:
    return Options(bootstrap=bootstrap_settings(args), answer_key=answer_key(args.answer_key),
                   n_draws=args.n_draws, lm_head_cost=args.lm_head_cost)
