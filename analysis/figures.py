"""Figures of the analysis, as PNG and PDF, drawn from the tables of :mod:`analysis.tables`.

* ``heatmap_<model>``    -- accuracy per layer span x temperature, a panel per benchmark;
* ``oracle_bars``        -- oracle per pool and model with intervals, a panel per benchmark;
* ``pass_at_k_<model>``  -- pass@k of each pool against the number of rollouts k;
* ``complementarity``    -- problems solved by both axes, one of them, or neither;
* ``cost``               -- gated-step rate and relative compute per layer span.

With several configurations, ``<model>`` is the model and its configuration
(``heatmap_qwen2.5-3b-instruct_tau=0.5``), and bars and lines are drawn per
model and configuration.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.common import (
    CATEGORY_COLORS,
    CATEGORY_LABELS,
    POOL_COLORS,
    POOL_LABELS,
    apply_style,
    benchmark_label,
    save_figure,
)
from eglr.metrics import CATEGORIES

BAR_POOLS = (
    "greedy", "temperature_only", "layer_only", "joint",
    "temperature_only_at_joint_budget", "joint_at_temperature_budget",
)


def make_figures(tables: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """Draw every figure the tables allow; returns the files written."""
    apply_style()
    paths: list[Path] = []
    for (model, configuration), cells in tables["cells"].groupby(SERIES, observed=True, sort=True):
        paths += heatmap(cells, series_name(model, configuration), out_dir)
    paths += oracle_bars(tables["oracles"], out_dir)
    for (model, configuration), curves in tables["pass_at_k"].groupby(SERIES, observed=True, sort=True):
        paths += pass_at_k_curves(curves, series_name(model, configuration), tables["oracles"], out_dir)
    paths += complementarity_bars(tables["complementarity"], out_dir)
    if "cost_by_span" in tables:
        paths += cost_by_span(tables["cost_by_span"], out_dir)
    return paths


SERIES = ["model", "configuration"]  # one heatmap, one set of curves, one bar per model and configuration


def series_name(model: object, configuration: object) -> str:
    """``model``, or ``model configuration`` when the input holds several configurations."""
    return " ".join(filter(None, [str(model), str(configuration)]))


def series_labels(table: pd.DataFrame) -> list[str]:
    return [series_name(model, configuration) for model, configuration in zip(table["model"], table["configuration"])]


def file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", name)


def _panels(count: int, columns: int = 3, width: float = 3.4, height: float = 2.8):
    import matplotlib.pyplot as plt

    columns = min(columns, count)
    rows = math.ceil(count / columns)
    # A lone panel still needs room for the figure-wide title and legend.
    figure, axes = plt.subplots(rows, columns, figsize=(max(width * columns, 6.8), height * rows), squeeze=False,
                                layout="constrained")
    for axis in axes.flat[count:]:
        axis.set_visible(False)
    return figure, list(axes.flat[:count])


def heatmap(cells: pd.DataFrame, model: str, out_dir: Path) -> list[Path]:
    """Accuracy per (layer span, temperature), one panel per benchmark."""
    benchmarks = list(cells.groupby("benchmark", observed=True, sort=True).groups)
    figure, axes = _panels(len(benchmarks))
    for axis, benchmark in zip(axes, benchmarks):
        grid = cells.loc[cells["benchmark"] == benchmark].pivot_table(
            index="layer_span", columns="temperature", values="accuracy", sort=True
        )
        axis.imshow(grid.to_numpy(), cmap="viridis", aspect="auto", origin="lower")
        for (row, column), value in np.ndenumerate(grid.to_numpy()):
            if not np.isnan(value):
                axis.text(column, row, f"{value:.1f}", ha="center", va="center", fontsize=7,
                          color="white" if value < np.nanmean(grid.to_numpy()) else "black")
        axis.set_xticks(range(grid.shape[1]), [f"{t:g}" for t in grid.columns])
        axis.set_yticks(range(grid.shape[0]), [str(span) for span in grid.index])
        axis.set_xlabel("temperature T")
        axis.set_ylabel("layer span L")
        axis.set_title(benchmark_label(str(benchmark)))
        axis.grid(False)
    figure.suptitle(f"{model}: accuracy (%) per layer span and temperature (colour scale per panel)")
    return save_figure(figure, out_dir, f"heatmap_{file_stem(model)}")


def oracle_bars(oracles: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Oracle of each pool per model, with bootstrap intervals; a panel per benchmark."""
    pools = [pool for pool in BAR_POOLS if oracles[pool].notna().any()]
    benchmarks = list(oracles.groupby("benchmark", observed=True, sort=True).groups)
    n_models = oracles.groupby(SERIES, observed=True).ngroups
    columns = 3 if n_models <= 2 else 2 if n_models <= 4 else 1  # room for every model's bars
    figure, axes = _panels(len(benchmarks), columns=columns, width=max(3.4, 0.9 * n_models + 1.5))
    width = 0.8 / len(pools)
    for axis, benchmark in zip(axes, benchmarks):
        rows = oracles.loc[oracles["benchmark"] == benchmark].reset_index(drop=True)
        positions = np.arange(len(rows))
        for index, pool in enumerate(pools):
            values = rows[pool].to_numpy(dtype=float)
            errors = np.abs(np.vstack([values - rows[f"{pool}_ci_low"], rows[f"{pool}_ci_high"] - values]))
            axis.bar(positions + (index - (len(pools) - 1) / 2) * width, values, width,
                     yerr=errors, capsize=2, color=POOL_COLORS[pool], label=POOL_LABELS[pool],
                     error_kw={"linewidth": 0.8})
        axis.set_xticks(positions, series_labels(rows), rotation=20, ha="right")
        axis.set_ylim(0, 105)
        axis.set_ylabel("accuracy (%)")
        axis.set_title(benchmark_label(str(benchmark)))
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=len(pools))
    figure.suptitle("Oracle (any correct) per pool, with 95% bootstrap intervals")
    return save_figure(figure, out_dir, "oracle_bars")


def pass_at_k_curves(curves: pd.DataFrame, model: str, oracles: pd.DataFrame, out_dir: Path) -> list[Path]:
    """pass@k of each pool against k: pools compared at equal numbers of rollouts."""
    from matplotlib.ticker import FuncFormatter

    benchmarks = list(curves.groupby("benchmark", observed=True, sort=True).groups)
    figure, axes = _panels(len(benchmarks))
    for axis, benchmark in zip(axes, benchmarks):
        rows = curves.loc[curves["benchmark"] == benchmark]
        for pool, curve in rows.groupby("pool", observed=True, sort=False):
            color = POOL_COLORS.get(str(pool))
            axis.plot(curve["k"], curve["pass_at_k"], color=color, label=POOL_LABELS.get(str(pool), str(pool)))
            axis.fill_between(curve["k"], curve["pass_at_k_ci_low"], curve["pass_at_k_ci_high"],
                              color=color, alpha=0.2, linewidth=0)
        sizes = oracles.loc[(oracles["benchmark"] == benchmark).to_numpy() & (np.array(series_labels(oracles)) == model)]
        if len(sizes):
            equal = int(min(sizes["temperature_only_n"].iloc[0], sizes["joint_n"].iloc[0]))
            axis.axvline(equal, color="black", linestyle=":", linewidth=0.8, label="equal budget")
        axis.set_xscale("log", base=2)
        axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_xlabel("rollouts k")
        axis.set_ylabel("pass@k (%)")
        axis.set_title(benchmark_label(str(benchmark)))
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=4)
    figure.suptitle(f"{model}: pass@k per pool (unbiased estimator, 95% intervals)")
    return save_figure(figure, out_dir, f"pass_at_k_{file_stem(model)}")


def complementarity_bars(table: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Share of problems solved by both axes, only one, or neither; a bar per model."""
    benchmarks = list(table.groupby("benchmark", observed=True, sort=True).groups)
    figure, axes = _panels(len(benchmarks), height=0.45 * table.groupby(SERIES, observed=True).ngroups + 1.4)
    for axis, benchmark in zip(axes, benchmarks):
        rows = table.loc[table["benchmark"] == benchmark].reset_index(drop=True)
        left = np.zeros(len(rows))
        for category in CATEGORIES:
            axis.barh(series_labels(rows), rows[category], left=left,
                      color=CATEGORY_COLORS[category], label=CATEGORY_LABELS[category])
            left += rows[category].to_numpy(dtype=float)
        axis.set_xlim(0, 100)
        axis.set_xlabel("problems (%)")
        axis.set_title(benchmark_label(str(benchmark)))
        axis.invert_yaxis()
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=len(CATEGORIES))
    figure.suptitle("Which axis solves a problem (oracle of layer-only vs temperature-only pool)")
    return save_figure(figure, out_dir, "complementarity")


def cost_by_span(cost: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Gated-step rate and relative compute against layer span, a line per model."""
    figure, (rate_axis, compute_axis) = _panels(2, columns=2)
    for (model, configuration), rows in cost.groupby(SERIES, observed=True, sort=True):
        label = series_name(model, configuration)
        rate_axis.plot(rows["layer_span"], 100 * rows["gated_rate"], marker="o", label=label)
        compute_axis.plot(rows["layer_span"], rows["relative_compute"], marker="o", label=label)
    rate_axis.set_xlabel("layer span L")
    rate_axis.set_ylabel("gated steps (%)")
    compute_axis.set_xlabel("layer span L")
    compute_axis.set_ylabel("compute / plain decode")
    compute_axis.axhline(1.0, color="black", linewidth=0.6)
    rate_axis.legend()
    figure.suptitle("Cost of EGLR per layer span (all benchmarks and temperatures)")
    return save_figure(figure, out_dir, "cost")
