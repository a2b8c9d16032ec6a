"""What the analysis modules share: command-line options, table writers, names and plot style."""
from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from eglr.benchmarks.registry import get_benchmark
from eglr.metrics import ANALYSIS_COLUMNS, Bootstrap, complete_problems, load_rollouts
from eglr.metrics.cost import DEFAULT_LM_HEAD_COST
from eglr.metrics.sampling import DEFAULT_DRAWS
from eglr.metrics.voting import AnswerKey, default_answer_key, exact_answer_key


POOL_LABELS = {
    "greedy": "Greedy",
    "temperature_only": "Temperature only",
    "layer_only": "Layer only",
    "joint": "Joint LxT",
    "joint_at_temperature_budget": "Joint @ temp. budget",
    "temperature_only_at_joint_budget": "Temp. @ joint budget",
}
POOL_COLORS = {
    "greedy": "#7f7f7f",
    "temperature_only": "#1f77b4",
    "layer_only": "#ff7f0e",
    "joint": "#2ca02c",
    "joint_at_temperature_budget": "#98df8a",
    "temperature_only_at_joint_budget": "#aec7e8",
}
CATEGORY_LABELS = {
    "both": "Both axes",
    "only_layer": "Layer axis only",
    "only_temperature": "Temperature only",
    "neither": "Neither",
}
CATEGORY_COLORS = {"both": "#2ca02c", "only_layer": "#ff7f0e", "only_temperature": "#1f77b4", "neither": "#d9d9d9"}


def benchmark_label(name: str) -> str:
    """The registry's display label of benchmark ``name``; an unregistered name as it is."""
    try:
        return get_benchmark(name).label
    except ValueError:
        return name


ANSWER_KEYS = {"grading": None, "exact": exact_answer_key}


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """--rollouts, --out and the bootstrap options every script takes."""
    parser.add_argument("--rollouts", nargs="+", required=True, type=Path,
                        help="rollout JSONL files or directories (searched recursively)")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--n-resamples", type=int, default=1000, help="bootstrap resamples of the problems")
    parser.add_argument("--confidence", type=float, default=0.95, help="confidence level of the intervals")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and of subset draws")
    parser.add_argument("--layer-spans", type=_layer_spans, default=None,
                        help="analyse only these layer spans, e.g. 0,2 (an interim report of a study whose "
                             "larger spans are not written yet); default: every span in the rollouts")


def _layer_spans(text: str) -> tuple[int, ...]:
    try:
        spans = tuple(sorted({int(item) for item in text.split(",")}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layer-spans {text!r}: give integers separated by commas, e.g. 0,2")
    if not spans or min(spans) < 0:
        raise argparse.ArgumentTypeError(f"--layer-spans {text!r}: give layer spans >= 0, e.g. 0,2")
    return spans


def add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of majority vote and best-of-N (and the cost model)."""
    parser.add_argument("--answer-key", choices=sorted(ANSWER_KEYS), default="grading",
                        help="how answers are grouped for voting: eglr.grading.answer_key or exact text")
    parser.add_argument("--n-draws", type=int, default=DEFAULT_DRAWS,
                        help="random subsets per problem for majority vote / best-of-N at a smaller budget")
    parser.add_argument("--lm-head-cost", type=float, default=DEFAULT_LM_HEAD_COST,
                        help="lm_head cost in decoder-layer equivalents, for relative compute")


def bootstrap_settings(args: argparse.Namespace) -> Bootstrap:
    return Bootstrap(n_resamples=args.n_resamples, confidence=args.confidence, seed=args.seed)


def answer_key(name: str) -> AnswerKey:
    return ANSWER_KEYS[name] or default_answer_key()


def load(paths: Sequence[Path], layer_spans: Sequence[int] | None = None) -> pd.DataFrame:
    """The rollouts, without response texts (the analysis never reads them), every configuration
    kept apart (:func:`eglr.metrics.load_rollouts`), at ``layer_spans`` (default: all), of the
    problems whose grid is complete (:func:`eglr.metrics.complete_problems`: a running job's partly
    done problems are left out, with a warning; ``attrs["partial_problems"]`` says how many)."""
    rollouts = load_rollouts(paths, columns=ANALYSIS_COLUMNS)
    if layer_spans is not None:
        missing = sorted(set(layer_spans) - set(rollouts["layer_span"]))
        if missing:
            raise ValueError(f"--layer-spans: the rollouts have no layer span {missing} "
                             f"(they have {sorted(set(rollouts['layer_span']))})")
        rollouts = rollouts.loc[rollouts["layer_span"].isin(layer_spans)].reset_index(drop=True)
    rollouts = complete_problems(rollouts)
    rollouts.attrs["layer_spans"] = None if layer_spans is None else tuple(layer_spans)
    partial = rollouts.attrs["partial_problems"]
    if partial:
        warnings.warn(f"{partial} problem(s) have only part of their grid (a job still running or stopped): "
                      "left out of every table", stacklevel=2)
    if rollouts.empty:
        raise ValueError("no problem has a complete grid yet: nothing to analyse")
    return rollouts


def format_ci(value: float, low: float, high: float, digits: int = 1) -> str:
    """``91.6 [89.0, 93.8]``; empty for a missing value."""
    if pd.isna(value):
        return ""
    if pd.isna(low) or pd.isna(high):
        return _fixed(value, digits)
    return f"{_fixed(value, digits)} [{_fixed(low, digits)}, {_fixed(high, digits)}]"


def _fixed(number: float, digits: int) -> str:
    return f"{round(number, digits) + 0.0:.{digits}f}"  # + 0.0 turns -0.0 into 0.0


def with_intervals(table: pd.DataFrame, metrics: Sequence[str], labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Replace each metric and its ``_ci_low``/``_ci_high`` columns by one formatted column."""
    shown = table.copy()
    for metric in metrics:
        shown[metric] = [
            format_ci(value, low, high)
            for value, low, high in zip(table[metric], table[f"{metric}_ci_low"], table[f"{metric}_ci_high"])
        ]
        shown = shown.drop(columns=[f"{metric}_ci_low", f"{metric}_ci_high"])
    if "benchmark" in shown:
        shown["benchmark"] = shown["benchmark"].astype(str).map(benchmark_label)
    return named_columns(shown, labels)


def named_columns(shown: pd.DataFrame, labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Display names for the key columns; the configuration column only when the input holds
    several configurations (it is empty when there is one)."""
    if "configuration" in shown and (shown["configuration"].astype(str) == "").all():
        shown = shown.drop(columns="configuration")
    return shown.rename(columns={"model": "Model", "benchmark": "Benchmark", "configuration": "Configuration",
                                 **(labels or {})})


def write_table(table: pd.DataFrame, out_dir: Path, stem: str, display: pd.DataFrame | None = None,
                caption: str | None = None) -> list[Path]:
    """``<stem>.csv`` (full precision) and, when a ``display`` version (formatted for
    reading) is given, ``<stem>.md`` and ``<stem>.tex`` (booktabs) of it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / f"{stem}.csv"
    table.to_csv(csv_path, index=False)
    if display is None:
        return [csv_path]
    md_path, tex_path = out_dir / f"{stem}.md", out_dir / f"{stem}.tex"
    md_path.write_text(markdown_table(display) + "\n")
    tex_path.write_text(display.to_latex(
        index=False, escape=True, float_format="%.1f", na_rep="", caption=caption,
        label=f"tab:{stem.replace('_', '-')}",
    ))
    return [csv_path, md_path, tex_path]


def markdown_table(display: pd.DataFrame) -> str:
    """A GitHub Markdown table; floats get one decimal, strings are printed as given."""
    if display.empty:
        return "_(no rows)_"
    numeric = [
        pd.api.types.is_numeric_dtype(display[name])
        or display[name].astype(str).str.fullmatch(r"[-+]?[0-9.]*").all()
        for name in display.columns
    ]
    cells = display.copy()
    for name in display.columns:
        if pd.api.types.is_float_dtype(display[name]):
            cells[name] = display[name].map(lambda value: "" if pd.isna(value) else f"{value:.1f}")
    return cells.to_markdown(
        index=False, disable_numparse=True, colalign=["right" if flag else "left" for flag in numeric]
    )


def apply_style() -> None:
    """One look for every figure (Agg backend: no display needed). Figures use
    constrained layout, so saving needs no extra tight-bbox pass."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "figure.dpi": 110,
        "savefig.dpi": 150,
        "savefig.bbox": "tight",
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.labelsize": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "legend.frameon": False,
        "legend.fontsize": 8,
    })


def save_figure(figure, out_dir: Path, stem: str) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf`` and close the figure."""
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    for path in paths:
        # No creation date in the PDF, so regenerated figures are byte-identical.
        figure.savefig(path, metadata={"CreationDate": None} if path.suffix == ".pdf" else None)
    plt.close(figure)
    return paths
