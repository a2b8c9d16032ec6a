"""Regenerate every table, figure and the report from rollout JSONL: the analysis' one entry point.

    python -m analysis.report --rollouts results/rollouts --out results/analysis

writes ``tables/`` (CSV, Markdown, LaTeX), ``figures/`` (PNG, PDF), ``report.md``,
``report.html`` and a copy of the headline ``oracles.csv`` at the top. The paper's reported
numbers (``analysis/paper_reported.csv``, or ``--paper``) are shown beside ours where the rollouts
cover the same model and benchmark. Rollouts of several configurations (say a tau sweep written to
one output directory) are reported side by side, each row naming its configuration, never pooled.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import pandas as pd

from analysis.common import (
    POOL_LABELS,
    add_common_arguments,
    add_selection_arguments,
    benchmark_label,
    format_ci,
    load,
    markdown_table,
    named_columns,
)
from analysis.figures import SERIES, file_stem, make_figures, series_name
from analysis.tables import Options, build_tables, display_tables, options_from_args, write_tables

PAPER_REPORTED = Path(__file__).with_name("paper_reported.csv")
PAPER_COLUMNS = ["model", "benchmark", "metric", "value"]


def load_paper(path: Path) -> pd.DataFrame:
    """The paper's reported numbers: one row per model, benchmark and oracle-table metric."""
    paper = pd.read_csv(path, dtype={"model": str, "benchmark": str, "metric": str})
    if list(paper.columns) != PAPER_COLUMNS:
        raise ValueError(f"{path} must have the columns {PAPER_COLUMNS}, got {list(paper.columns)}")
    return paper


def compare_with_paper(oracles: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Our value and interval beside each reported one that the rollouts cover."""
    unknown = sorted(set(paper["metric"]) - set(oracles.columns))
    if unknown:
        raise ValueError(f"paper metrics {unknown} are not columns of the oracle table")
    ours = oracles.assign(model=oracles["model"].astype(str), benchmark=oracles["benchmark"].astype(str))
    rows = []
    for reported in paper.itertuples(index=False):
        match = ours.loc[(ours["model"] == reported.model) & (ours["benchmark"] == reported.benchmark)]
        for row in match.itertuples(index=False):
            row = row._asdict()
            rows.append({
                "model": reported.model, "benchmark": reported.benchmark,
                "configuration": str(row.get("configuration", "")), "metric": reported.metric,
                "paper": reported.value, "ours": row[reported.metric],
                "ours_ci_low": row[f"{reported.metric}_ci_low"], "ours_ci_high": row[f"{reported.metric}_ci_high"],
                "difference": row[reported.metric] - reported.value,
            })
    return pd.DataFrame(rows, columns=["model", "benchmark", "configuration", "metric", "paper", "ours",
                                       "ours_ci_low", "ours_ci_high", "difference"])


def _display_comparison(comparison: pd.DataFrame) -> pd.DataFrame:
    return named_columns(pd.DataFrame({
        "model": comparison["model"],
        "benchmark": comparison["benchmark"].map(benchmark_label),
        "configuration": comparison["configuration"],
        "Pool": comparison["metric"].map(lambda name: POOL_LABELS.get(name, name)),
        "Paper (%)": comparison["paper"].map(lambda value: f"{value:.1f}"),
        "Ours (%)": [format_ci(*values) for values in
                     zip(comparison["ours"], comparison["ours_ci_low"], comparison["ours_ci_high"])],
        "Ours - paper": comparison["difference"].map(lambda value: f"{value:+.1f}"),
        "Paper value inside our interval": [
            "yes" if low <= paper <= high else "no"
            for paper, low, high in zip(comparison["paper"], comparison["ours_ci_low"], comparison["ours_ci_high"])
        ],
    }))


def _budget_sentences(oracles: pd.DataFrame, pairs: pd.DataFrame) -> list[str]:
    """A plain-words answer to "does the joint pool win only because it is larger?"."""
    sentences = []
    for row in oracles.itertuples(index=False):
        if len(pairs) and not ((pairs["model"] == str(row.model)) & (pairs["benchmark"] == str(row.benchmark))).any():
            continue
        name = ", ".join(filter(None, [str(row.model), benchmark_label(str(row.benchmark)), str(row.configuration)]))
        if not row.temperature_only_n:
            sentences.append(f"- **{name}**: no temperature-only pool (no rollouts at layer span 0), so no "
                             "equal-budget comparison.")
            continue
        equal = min(row.temperature_only_n, row.joint_n)
        gain = format_ci(row.joint_minus_temperature_only_equal_budget,
                         row.joint_minus_temperature_only_equal_budget_ci_low,
                         row.joint_minus_temperature_only_equal_budget_ci_high)
        joint = format_ci(row.joint, row.joint_ci_low, row.joint_ci_high)
        temperature = format_ci(row.temperature_only, row.temperature_only_ci_low, row.temperature_only_ci_high)
        sentences.append(
            f"- **{name}**: joint oracle {joint} % over "
            f"{row.joint_n} rollouts per problem, temperature-only {temperature} % over "
            f"{row.temperature_only_n}. At an equal budget of {equal} rollouts, joint minus "
            f"temperature-only is {gain} percentage points."
        )
    return sentences


def _configuration_lines(rollouts: pd.DataFrame, configurations: pd.DataFrame) -> list[str]:
    """With several configurations: which settings tell them apart, and the table of them."""
    labels = list(rollouts["configuration"].cat.categories)
    if len(labels) <= 1:
        return []
    return [
        "## Configurations",
        "",
        f"The rollouts hold {len(labels)} configurations (settings hashes), which differ in the settings "
        f"their names give: {', '.join(f'`{label}`' for label in labels)}. Every table and figure reports "
        "them side by side; no pool, oracle or mean mixes rollouts of two configurations. Their settings "
        "are in `tables/configurations.csv`.",
        "",
        markdown_table(configurations),
        "",
    ]


def _figure_lines(figures: list[Path], out_dir: Path, stems: list[str]) -> list[str]:
    present = {path.stem: path for path in figures if path.suffix == ".png"}
    return [f"![{stem}]({present[stem].relative_to(out_dir).as_posix()})" for stem in stems if stem in present]


def _partial_sentence(rollouts: pd.DataFrame) -> str:
    """What the selection left out: layer spans not asked for, problems with a partly written grid."""
    notes = []
    spans = rollouts.attrs.get("layer_spans")
    if spans is not None:
        notes.append("layer spans " + ", ".join(map(str, spans)) + " only (`--layer-spans`)")
    partial = rollouts.attrs.get("partial_problems", 0)
    if partial:
        notes.append(f"{rollouts['problem_id'].nunique()} problems with a complete grid; {partial} more, whose grid is "
                     "only partly written because the job is still running or was stopped, are left out")
    return f" ({'; '.join(notes)})" if notes else ""


def render_report(rollouts: pd.DataFrame, tables: dict[str, pd.DataFrame], figures: list[Path],
                  paper: pd.DataFrame, options: Options, sources: list[Path], out_dir: Path) -> str:
    """The report as Markdown: the tables and figures with the definitions needed to read them."""
    shown = display_tables(tables)
    oracles = tables["oracles"]
    models = rollouts["model"].nunique()
    series = [series_name(*pair) for pair in
              rollouts[SERIES].drop_duplicates().sort_values(SERIES).itertuples(index=False, name=None)]
    comparison = compare_with_paper(oracles, paper)
    bootstrap = options.bootstrap
    lines = [
        "# EGLR analysis report",
        "",
        f"{len(rollouts):,} graded rollouts of {models} model(s) on "
        f"{rollouts['benchmark'].nunique()} benchmark(s), read from "
        + ", ".join(f"`{path}`" for path in sources) + _partial_sentence(rollouts)
        + ". Accuracies are in percent; brackets are "
        f"{bootstrap.confidence:.0%} percentile bootstrap intervals over problems "
        f"({bootstrap.n_resamples} resamples, seed {bootstrap.seed}).",
        "",
        *_configuration_lines(rollouts, shown["configurations"]),
        "## The paper's numbers beside ours",
        "",
    ]
    if comparison.empty:
        lines.append("The rollouts cover none of the (model, benchmark) pairs of the paper's reported numbers "
                     "(`analysis/paper_reported.csv`).")
    else:
        lines.append(markdown_table(_display_comparison(comparison)))
    lines += [
        "",
        "## Oracles, and whether the joint pool wins only because it is larger",
        "",
        "A pool's oracle counts a problem as solved when any of its rollouts is correct. "
        "Pools differ in size (columns n: rollouts per problem), and a larger pool has more chances, "
        "so the joint L x T pool is also compared with the temperature-only pool at an *equal budget*: "
        "pass@k of both pools with k the smaller pool's size, computed with the unbiased estimator "
        "1 - C(n-c, k) / C(n, k) (the chance that k rollouts drawn at random from the pool include a "
        "correct one). The last column is their per-problem difference with a paired interval; an "
        "interval above zero is a gain that pool size does not explain.",
        "",
        *_budget_sentences(oracles, comparison),
        "",
        markdown_table(shown["oracles"]),
        "",
        *_figure_lines(figures, out_dir, ["oracle_bars"]),
        "",
        "## pass@k: pools at equal numbers of rollouts",
        "",
        "Each curve is pass@k of one pool for k up to its size; the dotted line marks the equal "
        "budget. Values are in `tables/pass_at_k.csv`.",
        "",
        *_figure_lines(figures, out_dir, [f"pass_at_k_{file_stem(name)}" for name in series]),
        "",
        "## Complementarity of the two axes",
        "",
        "Problems solved by the layer-only pool (temperature 0, every layer span), the "
        "temperature-only pool (layer span 0, every temperature), both, or neither. Both pools "
        "contain the greedy rollout, so a problem greedy solves counts as both.",
        "",
        markdown_table(shown["complementarity"]),
        "",
        *_figure_lines(figures, out_dir, ["complementarity"]),
        "",
        "## Accuracy per layer span and temperature",
        "",
        "Mean over problems of the fraction of correct rollouts in each cell (intervals in "
        "`tables/cells.csv`).",
        "",
        markdown_table(shown["cells"]),
        "",
        *_figure_lines(figures, out_dir, [f"heatmap_{file_stem(name)}" for name in series]),
        "",
        "## Self-consistency and best-of-N",
        "",
        f"Budget `full` uses the whole pool; `equal` draws random subsets of k rollouts from a larger "
        f"pool ({options.n_draws} draws per problem, averaged). Majority vote groups equivalent "
        "answers; among tied answers the one whose earliest rollout comes first in (layer span, "
        "temperature, sample) order wins, and rollouts without an answer abstain. Best-of-N keeps "
        "the top-scored rollout: the oracle verifier is the upper bound, answer frequency is majority "
        "vote, and mean log-probability is the model's own confidence.",
        "",
        markdown_table(shown["majority_vote"]),
        "",
        markdown_table(shown["best_of_n"]),
        "",
        "## GRPO signal",
        "",
        "For a group of G rollouts drawn without replacement from a pool, the share of problems whose "
        "group mixes correct and wrong rollouts (non-zero advantage) and the mean within-group reward "
        "variance; both are exact hypergeometric expectations. Pools smaller than G are left out.",
        "",
        markdown_table(shown["grpo"]),
        "",
        "## Cost",
        "",
    ]
    if "cost" in tables:
        lines += [
            "Gated steps are the share of decode steps whose entropy exceeded tau; re-applications "
            "counts the passes of the top L layers at gated steps, per rollout. Relative compute counts a decoder "
            f"layer as 1 and the lm_head as {options.lm_head_cost:g} layer(s): (T (N + h) + I (L + h)) / "
            "(T (N + h)) for T tokens, I re-applications, N layers and lm_head cost h; prefill is "
            "left out. Per-cell values are in `tables/cost.md`.",
            "",
            markdown_table(shown["cost_by_span"]),
            "",
            *_figure_lines(figures, out_dir, ["cost"]),
        ]
    else:
        lines.append("The rollouts lack the token and re-application counts the cost tables need.")
    if "convergence" in tables:
        lines += [
            "",
            "## Convergence",
            "",
            "At a gated step the top L layers are re-applied until KL(p_k || p_{k-1}) falls below eps (or the top "
            "token stops changing, criterion=argmax), at most k_max times. Converged is the share of gated steps "
            "whose test passed within k_max; the KL is the one between the last two iterates when the step "
            "stopped, averaged over gated steps; length-stopped counts rollouts that ran into max_new_tokens.",
            "",
            markdown_table(shown["convergence"]),
        ]
    lines += [
        "",
        "## Files",
        "",
        "Every table is in `tables/` as CSV (full precision), Markdown and LaTeX (booktabs); every "
        "figure in `figures/` as PNG and PDF.",
        "",
    ]
    return "\n".join(lines)


HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>EGLR analysis report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; line-height: 1.45; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }}
th {{ border-bottom: 2px solid #444; }}
td:first-child, th:first-child {{ text-align: left; }}
img {{ max-width: 100%; }}
code {{ background: #f3f3f3; padding: 0 0.2em; }}
</style></head><body>
{body}
</body></html>
"""


def to_html(markdown: str) -> str:
    """The report as a standalone HTML page (images stay as relative links)."""
    from markdown_it import MarkdownIt

    return HTML_PAGE.format(body=MarkdownIt("commonmark").enable("table").render(markdown))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    add_selection_arguments(parser)
    parser.add_argument("--paper", type=Path, default=PAPER_REPORTED,
                        help="CSV of the paper's reported numbers (model, benchmark, metric, value)")
    parser.add_argument("--no-figures", action="store_true", help="skip the figures (faster)")
    args = parser.parse_args(argv)
    paper = load_paper(args.paper)
    rollouts = load(args.rollouts, args.layer_spans)
    options = options_from_args(args)
    tables = build_tables(rollouts, options)
    written = write_tables(tables, args.out / "tables")
    # The headline table also sits at the top of the output, where scripts and CI look for it.
    shutil.copyfile(args.out / "tables" / "oracles.csv", args.out / "oracles.csv")
    figures = [] if args.no_figures else make_figures(tables, args.out / "figures")
    report = render_report(rollouts, tables, figures, paper, options, args.rollouts, args.out)
    (args.out / "report.md").write_text(report)
    (args.out / "report.html").write_text(to_html(report))
    print(f"{len(written)} table files, {len(figures)} figure files, report: {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
