"""The analysis (python -m analysis.report) end to end on a small synthetic rollout directory."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis import report
from analysis.report import compare_with_paper, load_paper
from eglr.metrics import Bootstrap, load_rollouts, oracle_table
from eglr.metrics.synthetic import synthetic_rollouts, write_rollouts

REPO_ROOT = Path(__file__).resolve().parent.parent
FAST = ["--n-resamples", "100", "--n-draws", "2"]


@pytest.fixture(scope="module")
def rollout_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("rollouts")
    write_rollouts(synthetic_rollouts(models=("qwen2.5-3b-instruct",), benchmarks=("math500", "gsm8k"),
                                      n_problems=12, samples_at_layer_span_0=6), directory)
    return directory


@pytest.fixture(scope="module")
def report_dir(rollout_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    assert report.main(["--rollouts", str(rollout_dir), "--out", str(out), *FAST]) == 0
    return out


def test_oracle_table_has_one_row_per_model_and_benchmark(rollout_dir, report_dir):
    table = pd.read_csv(report_dir / "tables" / "oracles.csv", keep_default_na=False, na_values=[""])
    required = {"model", "benchmark", "configuration", "n_problems", "greedy", "temperature_only", "layer_only",
                "joint", "temperature_only_n", "joint_n", "temperature_only_at_joint_budget",
                "joint_at_temperature_budget", "joint_ci_low", "joint_ci_high"}
    assert required <= set(table.columns)
    assert sorted(table["benchmark"]) == ["gsm8k", "math500"] and (table["n_problems"] == 12).all()
    # 1 + 2 x 6 temperature samples at layer span 0; 3 spans x (1 + 2 x 4) in the joint grid.
    assert (table["temperature_only_n"] == 13).all() and (table["joint_n"] == 27).all()
    expected = oracle_table(load_rollouts(rollout_dir), Bootstrap(n_resamples=100))
    assert table["joint"].tolist() == pytest.approx(expected["joint"].tolist())
    assert table["temperature_only_at_joint_budget"].isna().all()  # 13 < 27: left empty
    assert "\\toprule" in (report_dir / "tables" / "oracles.tex").read_text()
    markdown = (report_dir / "tables" / "oracles.md").read_text()
    assert "| qwen2.5-3b-instruct" in markdown and "Configuration" not in markdown  # one configuration


def test_every_table_is_written(report_dir):
    tables = report_dir / "tables"
    for name in ("configurations", "oracles", "cells", "cost", "cost_by_span", "complementarity", "majority_vote",
                 "best_of_n", "grpo"):
        for suffix in (".csv", ".md", ".tex"):
            assert (tables / f"{name}{suffix}").stat().st_size > 0, name + suffix
    cells = pd.read_csv(tables / "cells.csv")
    assert len(cells) == 2 * 3 * 3  # benchmarks x layer spans x temperatures
    assert {"accuracy", "accuracy_ci_low", "accuracy_ci_high", "n_rollouts"} <= set(cells.columns)
    cost = pd.read_csv(tables / "cost.csv")
    assert (cost.loc[cost["layer_span"] == 0, "relative_compute"] == 1.0).all()
    assert (cost.loc[cost["layer_span"] > 0, "relative_compute"] > 1.0).all()
    votes = pd.read_csv(tables / "majority_vote.csv")
    assert set(votes["budget"]) == {"full", "equal"} and votes["majority_vote"].between(0, 100).all()
    assert {"oracle", "answer_frequency", "mean_logprob"} <= set(pd.read_csv(tables / "best_of_n.csv").columns)
    assert "T=0 (greedy)" in (tables / "cells.md").read_text()


def test_figures_are_written_as_png_and_pdf(report_dir):
    figures = report_dir / "figures"
    stems = {"heatmap_qwen2.5-3b-instruct", "oracle_bars", "pass_at_k_qwen2.5-3b-instruct", "complementarity", "cost"}
    written = {path.name for path in figures.iterdir()}
    assert {f"{stem}{suffix}" for stem in stems for suffix in (".png", ".pdf")} <= written
    assert (figures / "oracle_bars.png").read_bytes()[:4] == b"\x89PNG"


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
    paper = load_paper(report.PAPER_REPORTED)
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


def test_the_analysis_never_imports_the_engine(rollout_dir, tmp_path):
    code = (
        "import sys\n"
        "from analysis.report import main\n"
        "assert main(['--rollouts', sys.argv[1], '--out', sys.argv[2], '--n-resamples', '20', '--n-draws', '1',"
        " '--no-figures']) == 0\n"
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


def test_the_analysis_is_an_installed_package():
    import tomllib

    from setuptools import find_packages

    setup = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = find_packages(str(REPO_ROOT), include=setup["packages"]["find"]["include"])
    assert {"eglr", "eglr.metrics", "analysis"} <= set(found)


def test_report_runs_from_any_directory_after_installation(rollout_dir, tmp_path):
    """Install this tree (not editable) into a scratch directory, then run the report from elsewhere."""
    import os
    import shutil

    source = tmp_path / "source"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".venv*", ".git", "results", "tests", "outputs", "multirun", "build", "*.egg-info", "__pycache__"))
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                              "--no-index", "--quiet", "--target", str(site), str(source)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = ("import sys, analysis.report as r; assert r.__file__.startswith(sys.argv[1]), r.__file__; "
            "sys.exit(r.main(sys.argv[2:]))")
    result = subprocess.run([sys.executable, "-c", code, str(site), "--rollouts", str(rollout_dir),
                             "--out", str(tmp_path / "out"), "--n-resamples", "20", "--n-draws", "1", "--no-figures"],
                            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "out" / "oracles.csv").is_file()


def test_a_running_jobs_partly_done_problems_are_left_out_and_counted(tmp_path):
    rollouts = synthetic_rollouts(models=("qwen2.5-3b-instruct",), benchmarks=("gsm8k",), n_problems=6,
                                  samples_at_layer_span_0=6)
    last = rollouts["problem_id"].iloc[-1]
    partial = rollouts.loc[(rollouts["problem_id"] != last) | (rollouts["layer_span"] == 0)]
    write_rollouts(partial, tmp_path / "rollouts")
    with pytest.warns(UserWarning, match="1 problem"):
        assert report.main(["--rollouts", str(tmp_path / "rollouts"), "--out", str(tmp_path / "out"),
                            *FAST, "--no-figures"]) == 0
    oracles = pd.read_csv(tmp_path / "out" / "oracles.csv")
    assert oracles["n_problems"].tolist() == [5]
    assert "1 more, whose grid is only partly written" in (tmp_path / "out" / "report.md").read_text()


def test_layer_spans_select_an_interim_grid(tmp_path):
    rollouts = synthetic_rollouts(models=("qwen2.5-3b-instruct",), benchmarks=("gsm8k",), n_problems=6,
                                  samples_at_layer_span_0=6)
    last = rollouts["problem_id"].iloc[-1]
    write_rollouts(rollouts.loc[(rollouts["problem_id"] != last) | (rollouts["layer_span"] < 4)], tmp_path / "r")
    out = tmp_path / "out"
    assert report.main(["--rollouts", str(tmp_path / "r"), "--out", str(out), "--layer-spans", "0,2",
                        *FAST, "--no-figures"]) == 0
    assert pd.read_csv(out / "oracles.csv")["n_problems"].tolist() == [6]
    cells = pd.read_csv(out / "tables" / "cells.csv")
    assert sorted(cells["layer_span"].unique()) == [0, 2]
    assert "layer spans 0, 2 only" in (out / "report.md").read_text()
    with pytest.raises(ValueError, match=r"no layer span \[8\]"):
        report.main(["--rollouts", str(tmp_path / "r"), "--out", str(out), "--layer-spans", "0,8", *FAST])
    with pytest.raises(SystemExit):
        report.main(["--rollouts", str(tmp_path / "r"), "--out", str(out), "--layer-spans", "0,x"])
