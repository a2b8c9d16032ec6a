"""The runner end to end on a tiny random Qwen2 against the real MATH-500 file."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT, compose
from eglr.runner import output_path, run

RECORD_FIELDS = [
    "model", "model_id", "revision", "benchmark", "problem_id", "layer_span", "temperature", "top_p",
    "sample", "seed", "tau", "k_max", "eps", "criterion", "kv_policy", "max_new_tokens", "prompt_version",
    "response", "gold", "extracted", "correct", "num_tokens", "num_gated", "num_iterations",
    "finish_reason", "time_s", "settings_hash", "eglr_version",
]
# A grid of greedy and sampled cells over two layer spans; tau=0 gates most steps of a random model.
SMALL = ["model=tiny-random-qwen2", "benchmark=math500", "grid.layer_spans=[0,2]",
         "grid.temperatures=[0.0,1.0]", "grid.samples=2", "eglr.tau=0.0", "generation.max_new_tokens=6",
         "generation.batch_size=4", "limit=3", "progress=false"]


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def without_time(lines: list[str]) -> list[dict]:
    records = [json.loads(line) for line in lines]
    for record in records:
        record.pop("time_s")
    return records


def key(record: dict) -> tuple:
    return record["problem_id"], record["layer_span"], record["temperature"], record["sample"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("rollouts")
    cfg = compose(SMALL + [f"output_dir={out}"])
    summary = run(cfg)
    return cfg, summary, output_path(cfg)


def test_records_have_every_field_and_one_per_key(small_run) -> None:
    cfg, summary, path = small_run
    records = read_records(path)
    # 3 problems x (L=0, L=2) x (greedy 1 + T=1.0 2 samples)
    assert summary["generated"] == len(records) == 3 * 2 * 3
    assert len({key(r) for r in records}) == len(records)
    for record in records:
        missing = [name for name in RECORD_FIELDS if name not in record]
        assert not missing, missing
        assert record["model"] == "tiny-random-qwen2" and record["benchmark"] == "math500"
        assert record["finish_reason"] in {"eos", "length"}
        assert 0 <= record["num_gated"] <= record["num_tokens"] <= 6
        assert record["num_iterations"] <= cfg.eglr.k_max * record["num_gated"]
        assert isinstance(record["correct"], bool)
        assert record["gold"] and record["eglr_version"].startswith("0.")
    assert any(r["num_gated"] > 0 for r in records if r["layer_span"] == 2)
    assert all(r["num_gated"] == 0 for r in records if r["layer_span"] == 0)


def test_seeds_depend_on_problem_temperature_sample_not_layer_span(small_run) -> None:
    records = read_records(small_run[2])
    greedy = [r for r in records if r["temperature"] == 0]
    assert all(r["seed"] is None for r in greedy)
    sampled = {(r["problem_id"], r["sample"], r["layer_span"]): r["seed"] for r in records if r["temperature"] > 0}
    for (problem, sample, layer_span), seed in sampled.items():
        assert seed == sampled[(problem, sample, 0)]
    per_span = [seed for (p, s, layer_span), seed in sampled.items() if layer_span == 0]
    assert len(set(per_span)) == len(per_span)


def test_rerun_generates_nothing_and_leaves_the_file_untouched(small_run) -> None:
    cfg, _, path = small_run
    before = path.read_bytes()
    summary = run(cfg)
    assert summary["generated"] == 0 and summary["skipped"] == summary["rollouts"]
    assert path.read_bytes() == before


def test_greedy_rerun_is_byte_identical_apart_from_time(tmp_path, data_dir) -> None:
    runs = []
    for name in ("first", "second"):
        cfg = compose(SMALL + ["grid.temperatures=[0.0]", f"output_dir={tmp_path / name}"])
        run(cfg)
        runs.append(output_path(cfg).read_text(encoding="utf-8").splitlines())
    assert len(runs[0]) == 6
    assert without_time(runs[0]) == without_time(runs[1])


def test_changed_settings_regenerate_and_keep_old_records(tmp_path, data_dir) -> None:
    base = SMALL + ["grid.temperatures=[0.0]", "grid.layer_spans=[2]", f"output_dir={tmp_path}"]
    run(compose(base))
    summary = run(compose(base + ["eglr.tau=0.5"]))
    assert summary["generated"] == 3
    records = read_records(output_path(compose(base)))
    assert len(records) == 6 and len({r["settings_hash"] for r in records}) == 2


def test_shards_split_problems_into_separate_files(tmp_path, data_dir) -> None:
    base = SMALL + ["grid.temperatures=[0.0]", "grid.layer_spans=[0]", "limit=5", f"output_dir={tmp_path}"]
    paths = []
    for shard in (0, 1):
        cfg = compose(base + [f"shard={shard}", "num_shards=2"])
        run(cfg)
        paths.append(output_path(cfg))
    assert paths[0] != paths[1]
    ids = [{r["problem_id"] for r in read_records(path)} for path in paths]
    assert len(ids[0]) == 3 and len(ids[1]) == 2 and not ids[0] & ids[1]


@pytest.mark.parametrize("override,message", [
    ("grid.layer_spans=[0,5]", "grid.layer_spans: 5 is outside [0, 4]"),
    ("grid.temperatures=[-0.5]", "grid.temperatures: -0.5"),
    ("grid.layer_spans=[]", "grid.layer_spans is empty"),
    ("grid.temperatures=[]", "grid.temperatures is empty"),
    ("eglr.criterion=median", "median"),
    ("eglr.k_max=-1", "k_max"),
    ("benchmark.name=math5000", "math5000"),
    ("shard=2", "shard=2"),
    ("generation.top_p=0", "top_p"),
])
def test_invalid_configuration_fails_before_loading_a_model(override, message, tmp_path, monkeypatch) -> None:
    import eglr.models

    def must_not_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the configuration was validated")

    monkeypatch.setattr(eglr.models, "load_model", must_not_load)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(".", r"\.")):
        run(compose(SMALL + [override, f"output_dir={tmp_path}"]))


def test_unknown_model_is_named_by_hydra() -> None:
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match="no-such-model"):
        compose(["model=no-such-model"])


def _cli(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONHASHSEED": "0", "HYDRA_FULL_ERROR": "1"}
    return subprocess.Popen([sys.executable, "-m", "eglr.run", *args], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path, data_dir) -> None:
    args = SMALL + ["limit=6", "generation.batch_size=2", "generation.max_new_tokens=12",
                    f"hydra.run.dir={tmp_path / 'hydra'}"]
    reference = _cli(args + [f"output_dir={tmp_path / 'reference'}"])
    interrupted_dir = tmp_path / "interrupted"
    victim = _cli(args + [f"output_dir={interrupted_dir}"])
    path = interrupted_dir / "tiny-random-qwen2" / "math500" / "rollouts.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and victim.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= 8:
            break
        time.sleep(0.05)
    assert victim.poll() is None, "the job finished before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    partial = path.read_bytes()
    # A crash in the middle of a write leaves a partial line: simulate one on top of the kill.
    path.write_bytes(partial + b'{"problem_id": "test/alg')
    resumed = _cli(args + [f"output_dir={interrupted_dir}"])
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read().decode()
    assert reference.wait(timeout=300) == 0, reference.stdout.read().decode()
    final = path.read_text(encoding="utf-8").splitlines()
    expected = (tmp_path / "reference" / path.relative_to(interrupted_dir)).read_text(encoding="utf-8").splitlines()
    assert len(final) == len(expected) == 6 * 2 * 3
    assert len({key(r) for r in without_time(final)}) == len(final)
    assert sorted(without_time(final), key=key) == sorted(without_time(expected), key=key)
    assert final[: partial.count(b"\n")] == partial.decode().splitlines()


def test_multirun_sweep_over_two_grid_values_writes_both_cells(tmp_path, data_dir) -> None:
    args = ["-m", "hydra/launcher=parallel", "grid.layer_spans=[0],[2]",
            *[a for a in SMALL if not a.startswith("grid.layer_spans")],
            "grid.temperatures=[0.0]", f"output_dir={tmp_path / 'out'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    sweep = _cli(args)
    output = sweep.communicate(timeout=400)[0].decode()
    assert sweep.returncode == 0, output
    records = read_records(tmp_path / "out" / "tiny-random-qwen2" / "math500" / "rollouts.jsonl")
    assert sorted({r["layer_span"] for r in records}) == [0, 2]
    assert len(records) == 2 * 3 and len({key(r) for r in records}) == 6


def test_wandb_offline_run_records_cell_accuracy_summary(tmp_path, monkeypatch, data_dir) -> None:
    from eglr.runner import cell_accuracy

    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose(SMALL + ["grid.temperatures=[0.0]", "wandb.mode=offline", f"output_dir={tmp_path / 'out'}"])
    run(cfg)
    records = read_records(output_path(cfg))
    summary = cell_accuracy(output_path(cfg), records[0]["settings_hash"])
    for layer_span in (0, 2):
        cell = [r["correct"] for r in records if r["layer_span"] == layer_span]
        assert summary[f"accuracy/L{layer_span}_T0"] == sum(cell) / len(cell)
    logs = list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(logs) == 1 and b"accuracy/L2_T0" in logs[0].read_bytes()
