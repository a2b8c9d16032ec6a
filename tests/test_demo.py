"""A reduced `make demo`: tiny-math on arith through the runner, the grader and the full report."""
from __future__ import annotations

import pandas as pd

from conftest import compose
from eglr.runner import output_path, run

REDUCED = ["experiment=demo", "limit=6", "grid.layer_spans=[0,1,3]", "grid.samples=2",
           "grid.samples_at_layer_span_0=4", "progress=false"]


def test_reduced_demo_end_to_end(tmp_path) -> None:
    from analysis.report import main as report

    cfg = compose(REDUCED + [f"output_dir={tmp_path / 'rollouts'}"])
    summary = run(cfg)
    # per problem: L=0 greedy + 4 samples, L=1 and L=3 greedy + 2 samples each
    assert summary["generated"] == 6 * (5 + 3 + 3)
    records = pd.read_json(output_path(cfg), lines=True)
    assert set(records["model"]) == {"tiny-math"} and set(records["benchmark"]) == {"arith"}
    greedy = records[(records["layer_span"] == 0) & (records["temperature"] == 0)]
    assert greedy["extracted"].notna().all(), "the trained model should state a boxed answer"
    assert records.loc[records["layer_span"] > 0, "num_gated"].sum() > 0

    out = tmp_path / "report"
    assert report(["--rollouts", str(tmp_path / "rollouts"), "--out", str(out), "--n-resamples", "50"]) == 0
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    oracles = pd.read_csv(out / "oracles.csv")
    assert list(oracles[["model", "benchmark"]].itertuples(index=False, name=None)) == [("tiny-math", "arith")]
    for column in ("greedy", "temperature_only", "layer_only", "joint", "temperature_only_n", "joint_n"):
        assert column in oracles.columns
    row = oracles.iloc[0]
    assert row["greedy"] <= row["temperature_only"] <= 100 and row["greedy"] <= row["layer_only"] <= row["joint"]
    # temperature-only: greedy + 4 samples; joint (balanced): 3 spans x (greedy + 2 samples)
    assert row["temperature_only_n"] == 5 and row["joint_n"] == 9
    assert list((out / "figures").glob("*.png")) and list((out / "figures").glob("*.pdf"))


def test_committed_demo_meets_its_targets(repo_root) -> None:
    """The committed `make demo` output: tiny-math greedy accuracy in 40-75%, temperature-only oracle above it."""
    demo = repo_root / "results" / "demo"
    oracles = pd.read_csv(demo / "oracles.csv")
    row = oracles.set_index(["model", "benchmark"]).loc[("tiny-math", "arith")]
    assert row["n_problems"] == 300
    assert 40 <= row["greedy"] <= 75
    assert row["temperature_only_ci_low"] > row["greedy"]
    assert (demo / "report.md").is_file()
    assert {path.suffix for path in (demo / "figures").iterdir()} == {".png", ".pdf"}
