"""Time the analysis on a million synthetic rollouts (8 models x 6 benchmarks, paper grid).

    python scripts/bench_analysis.py [--figures]

Generates the rollouts and writes them as JSONL (untimed), then times loading
them and computing and writing every table; figures are timed separately when
asked for. Writes ``results/bench/analysis.json`` with wall-clock and CPU seconds
(CPU time of this process, all threads) and the load average when it started:
on a shared machine the wall clock mostly measures the neighbours.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

from analysis.figures import make_figures
from analysis.tables import Options, split_selection, table_builders, write_tables
from eglr.metrics import ANALYSIS_COLUMNS, load_rollouts
from eglr.metrics.synthetic import synthetic_rollouts, write_rollouts
from eglr.metrics.voting import exact_answer_key

MODELS = [f"model-{index}" for index in range(8)]
BENCHMARKS = ["math500", "gsm8k", "aime24", "amc23", "minerva_math", "olympiadbench"]
# The paper grid: 5 layer spans, greedy + 2 temperatures, 4 samples per cell and
# 24 at layer span 0: 85 rollouts per problem.
GRID = {"layer_spans": (0, 1, 2, 4, 8), "temperatures": (0.0, 0.7, 1.0), "samples_per_cell": 4,
        "samples_at_layer_span_0": 24}
ROLLOUTS_PER_PROBLEM = 85


def answer_key_used():
    """eglr.grading.answer_key when it is importable, else exact text."""
    try:
        from eglr.grading import answer_key
    except ImportError:
        return exact_answer_key, "exact text (eglr.grading not importable)"
    return answer_key, "eglr.grading.answer_key"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=1_000_000, help="approximate number of rollouts")
    parser.add_argument("--figures", action="store_true", help="also time the figures (reported separately)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "results" / "bench" / "analysis.json")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    problems = max(1, round(args.rollouts / (len(MODELS) * len(BENCHMARKS) * ROLLOUTS_PER_PROBLEM)))
    key, key_name = answer_key_used()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        synthetic = synthetic_rollouts(MODELS, BENCHMARKS, problems, **GRID)
        write_rollouts(synthetic, scratch / "rollouts")
        count = len(synthetic)
        del synthetic

        cpu_started = time.process_time()
        started = time.perf_counter()
        rollouts = load_rollouts([scratch / "rollouts"], columns=ANALYSIS_COLUMNS)
        load_seconds = time.perf_counter() - started

        table_seconds, tables = {}, {}
        for name, build in table_builders(Options(answer_key=key)).items():
            started = time.perf_counter()
            tables[name] = build(rollouts)
            table_seconds[name] = round(time.perf_counter() - started, 2)
        tables = split_selection(tables)
        started = time.perf_counter()
        write_tables(tables, scratch / "tables")
        write_seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started

        figure_seconds = None
        if args.figures:
            started = time.perf_counter()
            make_figures(tables, scratch / "figures")
            figure_seconds = round(time.perf_counter() - started, 2)

    total = load_seconds + sum(table_seconds.values()) + write_seconds
    result = {
        "seconds_for_1m_rollouts": round(total, 2),
        "cpu_seconds_for_1m_rollouts": round(cpu_seconds, 2),
        "load_average_before": round(load_before, 2),
        "rollouts": count,
        "included": "load_rollouts of the JSONL files (without response texts; validated against the "
                    "record schema, configurations labelled), every table of "
                    "analysis/tables.py computed (1000 bootstrap resamples, 8 subset draws for "
                    "majority vote and best-of-N, computed together as 'selection') and written as "
                    "CSV, Markdown and LaTeX; figures excluded (seconds_figures when --figures)",
        "seconds_load_jsonl": round(load_seconds, 2),
        "seconds_per_table": table_seconds,
        "seconds_write_tables": round(write_seconds, 2),
        "seconds_figures": figure_seconds,
        "shape": {"models": len(MODELS), "benchmarks": len(BENCHMARKS), "problems_per_benchmark": problems,
                  "rollouts_per_problem": ROLLOUTS_PER_PROBLEM, **GRID},
        "answer_key": key_name,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
