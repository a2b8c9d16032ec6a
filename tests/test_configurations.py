"""The analysis never mixes configurations: runs under different settings in one output directory."""
from __future__ import annotations

import warnings

import pandas as pd
import pytest

from conftest import compose
from eglr.metrics import Bootstrap, load_rollouts, oracle_table
from eglr.runner import run

SMALL = ["model=tiny-random-qwen2", "benchmark=math500", "grid.temperatures=[0.0,1.0]", "grid.samples=2",
         "generation.max_new_tokens=6", "generation.batch_size=4", "limit=3", "progress=false"]


@pytest.fixture(scope="module")
def two_taus(tmp_path_factory, data_dir):
    """A job at tau=0, then the same output_dir with tau=1 at layer span 1 only (issue 12's case)."""
    out = tmp_path_factory.mktemp("rollouts")
    run(compose(SMALL + ["eglr.tau=0.0", "grid.layer_spans=[0,1,2]", f"output_dir={out}"]))
    run(compose(SMALL + ["eglr.tau=1.0", "grid.layer_spans=[1]", f"output_dir={out}"]))
    return out


def test_every_record_of_both_configurations_is_kept(two_taus) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rollouts = load_rollouts(two_taus)
    # 3 problems x (greedy + 2 samples) x 3 layer spans, then x 1 layer span
    assert len(rollouts) == 27 + 9
    counts = rollouts.groupby("configuration", observed=True).size()
    assert counts.to_dict() == {"tau=0.0": 27, "tau=1.0": 9}


def test_pools_of_one_configuration_hold_only_its_records(two_taus) -> None:
    oracles = oracle_table(load_rollouts(two_taus), Bootstrap(n_resamples=20)).set_index("configuration")
    assert list(oracles.index) == ["tau=0.0", "tau=1.0"]
    assert oracles.loc["tau=0.0", "layer_only_n"] == 3 and oracles.loc["tau=0.0", "joint_n"] == 9
    # tau=1 ran only layer span 1: no greedy baseline, a layer-only pool of one rollout.
    assert oracles.loc["tau=1.0", "layer_only_n"] == 1 and pd.isna(oracles.loc["tau=1.0", "greedy"])


def test_one_configuration_can_be_required(two_taus) -> None:
    from eglr.metrics import require_single_configuration

    with pytest.raises(ValueError, match=r"2 configurations.*tau.*0\.0.*1\.0"):
        require_single_configuration(load_rollouts(two_taus))


def test_the_report_shows_configurations_side_by_side(two_taus, tmp_path) -> None:
    from analysis.report import main as report

    assert report(["--rollouts", str(two_taus), "--out", str(tmp_path), "--n-resamples", "20",
                   "--n-draws", "1", "--no-figures"]) == 0
    oracles = pd.read_csv(tmp_path / "oracles.csv")
    assert sorted(oracles["configuration"]) == ["tau=0.0", "tau=1.0"]
    configurations = pd.read_csv(tmp_path / "tables" / "configurations.csv")
    assert set(configurations["tau"]) == {0.0, 1.0} and configurations["n_rollouts"].sum() == 36
    text = (tmp_path / "report.md").read_text()
    assert "2 configurations" in text and "tau" in text
