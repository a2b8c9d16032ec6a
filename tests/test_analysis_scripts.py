"""The analysis scripts end to end on a small synthetic rollout directory."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis import figures, oracles, report, tables
from analysis.report import compare_with_paper, load_paper
from eglr.metrics import Bootstrap, load_rollouts, oracle_table
from eglr.metrics.synthetic import synthetic_rollouts, write_rollouts

REPO_ROOT = Path(__file__).resolve().parent.parent
FAST = ["--n-resamples", "100", "--n-draws", "2"]


@pytest.fixture(scope="module")
def rollout_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("rollouts")
    write_rollouts(synthetic_rollouts(models=("qwen2.5-3b-instruct",), benchmarks=("math500", "gsm8k"),
                                      n_problems=12, baseline_samples=6), directory)
    return directory


@pytest.fixture(scope="module")
def report_dir(rollout_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    assert report.main(["--rollouts", str(rollout_dir), "--out", str(out), *FAST]) == 0
    return out


def test_oracles_script_writes_one_row_per_model_and_benchmark(rollout_dir, tmp_path):
    assert oracles.main(["--rollouts", str(rollout_dir), "--out", str(tmp_path), "--n-resamples", "100"]) == 0
    table = pd.read_csv(tmp_path / "oracles.csv")
    required = {"model", "benchmark", "n_problems", "greedy", "temperature_only", "layer_only", "joint",
                "temperature_only_n", "joint_n", "temperature_only_at_joint_budget",
                "joint_at_temperature_budget", "joint_ci_low", "joint_ci_high"}
    assert required <= set(table.columns)
    assert sorted(table["benchmark"]) == ["gsm8k", "math500"] and (table["n_problems"] == 12).all()
    # 1 + 2 x 6 temperature samples at layer span 0; 3 spans x (1 + 2 x 4) in the joint grid.
    assert (table["temperature_only_n"] == 13).all() and (table["joint_n"] == 27).all()
    expected = oracle_table(load_rollouts(rollout_dir), Bootstrap(n_resamples=100))
    assert table["joint"].tolist() == pytest.approx(expected["joint"].tolist())
    assert table["temperature_only_at_joint_budget"].isna().all()  # 13 < 27: left empty
    assert "\\toprule" in (tmp_path / "oracles.tex").read_text()
    assert "| qwen2.5-3b-instruct" in (tmp_path / "oracles.md").read_text()


def test_tables_script_writes_every_table(rollout_dir, tmp_path):
    assert tables.main(["--rollouts", str(rollout_dir), "--out", str(tmp_path), *FAST,
                        "--answer-key", "exact"]) == 0
    for name in ("oracles", "cells", "cost", "cost_by_span", "complementarity", "majority_vote", "best_of_n", "grpo"):
        for suffix in (".csv", ".md", ".tex"):
            assert (tmp_path / f"{name}{suffix}").stat().st_size > 0, name + suffix
    cells = pd.read_csv(tmp_path / "cells.csv")
    assert len(cells) == 2 * 3 * 3  # benchmarks x layer spans x temperatures
    assert {"accuracy", "accuracy_ci_low", "accuracy_ci_high", "n_rollouts"} <= set(cells.columns)
    cost = pd.read_csv(tmp_path / "cost.csv")
    assert (cost.loc[cost["layer_span"] == 0, "relative_compute"] == 1.0).all()
    assert (cost.loc[cost["layer_span"] > 0, "relative_compute"] > 1.0).all()
    votes = pd.read_csv(tmp_path / "majority_vote.csv")
    assert set(votes["budget"]) == {"full", "equal"} and votes["majority_vote"].between(0, 100).all()
    assert {"oracle", "answer_frequency", "mean_logprob"} <= set(pd.read_csv(tmp_path / "best_of_n.csv").columns)
    assert "T=0 (greedy)" in (tmp_path / "cells.md").read_text()


def test_figures_script_writes_png_and_pdf(rollout_dir, tmp_path):
    assert figures.main(["--rollouts", str(rollout_dir), "--out", str(tmp_path), *FAST]) == 0
    stems = {"heatmap_qwen2.5-3b-instruct", "oracle_bars", "pass_at_k_qwen2.5-3b-instruct", "complementarity", "cost"}
    written = {path.name for path in tmp_path.iterdir()}
    assert {f"{stem}{suffix}" for stem in stems for suffix in (".png", ".pdf")} <= written
    assert (tmp_path / "oracle_bars.png").read_bytes()[:4] == b"\x89PNG"


def test_report_assembles_tables_figures_and_the_papers_numbers(report_dir):
    text = (report_dir / "report.md").read_text()
    assert "## The paper's numbers beside ours" in text
    assert "| qwen2.5-3b-instruct | MATH-500    | Joint LxT" in text and "91.6" in text
    assert "![oracle_bars](figures/oracle_bars.png)" in text
    for link in ("figures/oracle_bars.png", "figures/heatmap_qwen2.5-3b-instruct.png", "figures/cost.png"):
        assert (report_dir / link).is_file()
    assert (report_dir / "tables" / "oracles.csv").is_file()
    assert (report_dir / "oracles.csv").read_bytes() == (report_dir / "tables" / "oracles.csv").read_bytes()
    html = (report_dir / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<table>" in html and 'src="figures/oracle_bars.png"' in html


def test_compare_with_paper_puts_our_value_beside_the_reported_one(report_dir):
    ours = pd.read_csv(report_dir / "tables" / "oracles.csv")
    paper = load_paper(REPO_ROOT / "results" / "paper_reported.csv")
    assert set(paper["metric"]) == {"joint", "temperature_only", "layer_only"}
    comparison = compare_with_paper(ours, paper).set_index("metric")
    math500 = ours.loc[ours["benchmark"] == "math500"].iloc[0]
    assert comparison.loc["joint", "paper"] == 91.6
    assert comparison.loc["joint", "difference"] == pytest.approx(math500["joint"] - 91.6)
    with pytest.raises(ValueError, match="not columns"):
        compare_with_paper(ours, paper.assign(metric="accuracy"))


def test_paper_file_with_wrong_columns_is_rejected(tmp_path):
    path = tmp_path / "paper.csv"
    path.write_text("model,benchmark,value\nm,b,1\n")
    with pytest.raises(ValueError, match="must have the columns"):
        load_paper(path)


def test_scripts_run_as_files_and_never_import_the_engine(rollout_dir, tmp_path):
    # Load analysis/oracles.py as a file (not as part of the package), run its main,
    # then check that neither the decoding engine nor torch/transformers got imported.
    code = (
        "import runpy, sys\n"
        "script = runpy.run_path('analysis/oracles.py', run_name='script')\n"
        "assert script['main'](['--rollouts', sys.argv[1], '--out', sys.argv[2], '--n-resamples', '50']) == 0\n"
        "loaded = {'torch', 'transformers', 'eglr.engine'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(rollout_dir), str(tmp_path)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "oracles.csv").is_file()


def test_saved_figures_are_byte_identical_when_regenerated(tmp_path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.common import save_figure

    contents = []
    for name in ("first", "second"):
        figure, axis = plt.subplots()
        axis.plot([0, 1, 2], [1, 0, 2])
        paths = save_figure(figure, tmp_path / name, "figure")
        contents.append([path.read_bytes() for path in paths])
    assert contents[0] == contents[1]
