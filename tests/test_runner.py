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
from eglr.schema import SCHEMA_VERSION, RolloutRecord

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
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        assert list(record) == list(RolloutRecord.field_names())  # the schema, in its order
        assert RolloutRecord.from_dict(record).to_json() == line
        assert record["schema_version"] == SCHEMA_VERSION and record["engine"] == "hf"
        assert record["model"] == "tiny-random-qwen2" and record["benchmark"] == "math500"
        assert record["finish_reason"] in {"eos", "length"}
        assert 0 <= record["num_gated"] <= record["num_tokens"] <= 6
        assert record["num_reapplications"] <= cfg.eglr.k_max * record["num_gated"]
        assert record["num_converged"] <= record["num_gated"]
        histogram = record["reapplication_histogram"]
        assert len(histogram) == cfg.eglr.k_max and sum(histogram) == record["num_gated"]
        assert sum((index + 1) * count for index, count in enumerate(histogram)) == record["num_reapplications"]
        assert (record["mean_stop_kl"] is None) == (record["num_gated"] == 0)
        assert record["tau"] == 0.0 and record["reinject"] == "raw" and record["provenance"] is None
        assert isinstance(record["correct"], bool) and record["grader_version"] and record["grade_reason"]
        assert record["gold"] and record["problem_digest"] and record["eglr_version"].startswith("0.")
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


def test_reuse_from_copies_the_same_settings_records_and_generates_only_the_rest(tmp_path, data_dir) -> None:
    import gzip

    base = SMALL + ["grid.temperatures=[0.0]"]
    source = compose(base + ["grid.layer_spans=[0]", f"output_dir={tmp_path / 'study'}"])
    run(source)
    source_lines = output_path(source).read_bytes().splitlines(keepends=True)
    wider = compose(base + [f"output_dir={tmp_path / 'ablation'}", f"reuse_from={tmp_path / 'study'}"])
    summary = run(wider)
    assert summary["reused"] == 3 and summary["generated"] == 3  # L = 0 copied, L = 2 generated
    lines = output_path(wider).read_bytes().splitlines(keepends=True)
    assert lines[:3] == source_lines  # the study's records, byte for byte
    assert {json.loads(line)["layer_span"] for line in lines[3:]} == {2}
    # only a snapshot of the source (a fresh clone): still reused
    output_path(source).with_name("rollouts.jsonl.gz").write_bytes(gzip.compress(b"".join(source_lines)))
    output_path(source).unlink()
    again = compose(base + ["grid.layer_spans=[0]", f"output_dir={tmp_path / 'again'}",
                            f"reuse_from={tmp_path / 'study'}"])
    assert run(again)["reused"] == 3
    # other settings: nothing in the source is theirs
    other = compose(base + ["grid.layer_spans=[0]", "eglr.tau=0.5", f"output_dir={tmp_path / 'other'}",
                            f"reuse_from={tmp_path / 'study'}"])
    summary = run(other)
    assert summary["reused"] == 0 and summary["generated"] == 3


def test_reuse_from_must_be_another_existing_directory(tmp_path) -> None:
    for value, message in ((tmp_path / "missing", "must be null or an existing output directory"),
                           (tmp_path, "is this job's own output_dir")):
        with pytest.raises(ValueError, match=f"reuse_from=.*{message}"):
            run(compose(SMALL + [f"output_dir={tmp_path}", f"reuse_from={value}"]))


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


# --- Settings identity and stale records -------------------------------------------------------

GREEDY_L2 = SMALL + ["grid.temperatures=[0.0]", "grid.layer_spans=[2]"]


def latest(records: list[dict]) -> dict[tuple, dict]:
    """The last record of each key (later records of a rollout supersede earlier ones)."""
    return {key(record): record for record in records}


def write_math500(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.write_text("".join(json.dumps({"unique_id": pid, "problem": text, "answer": gold}) + "\n"
                            for pid, text, gold in rows), encoding="utf-8")
    return path


def test_number_spelling_does_not_change_the_settings(tmp_path, data_dir) -> None:
    base = GREEDY_L2 + [f"output_dir={tmp_path}"]
    run(compose(base + ["eglr.tau=1.0"]))
    assert run(compose(base + ["eglr.tau=1"]))["generated"] == 0
    assert run(compose(base + ["eglr.tau=1", "generation.top_p=1"]))["generated"] == 0


def test_eps_is_left_out_under_the_argmax_criterion(tmp_path, data_dir) -> None:
    base = GREEDY_L2 + [f"output_dir={tmp_path}", "eglr.criterion=argmax"]
    run(compose(base))
    assert run(compose(base + ["eglr.eps=0.5"]))["generated"] == 0
    assert run(compose(base + ["eglr.criterion=kl", "eglr.eps=0.5"]))["generated"] == 3


def test_an_edited_gold_answer_is_regraded_not_reused(tmp_path) -> None:
    path = write_math500(tmp_path / "bench.jsonl", [("a", "What is 2+2?", "4"), ("b", "What is 3+3?", "6")])
    base = GREEDY_L2 + ["limit=null", f"benchmark.path={path}", f"output_dir={tmp_path / 'out'}"]
    cfg = compose(base)
    run(cfg)
    write_math500(path, [("a", "What is 2+2?", "4"), ("b", "What is 3+3?", "7")])
    summary = run(cfg)
    assert summary["generated"] == 0 and summary["regraded"] == 1
    records = latest(read_records(output_path(cfg)))
    assert records[("b", 2, 0.0, 0)]["gold"] == "7" and records[("a", 2, 0.0, 0)]["gold"] == "4"
    assert all(isinstance(record["correct"], bool) for record in records.values())
    assert run(cfg)["regraded"] == 0


def test_an_edited_problem_text_is_regenerated(tmp_path) -> None:
    path = write_math500(tmp_path / "bench.jsonl", [("a", "What is 2+2?", "4"), ("b", "What is 3+3?", "6")])
    base = GREEDY_L2 + ["limit=null", f"benchmark.path={path}", f"output_dir={tmp_path / 'out'}"]
    cfg = compose(base)
    run(cfg)
    before = latest(read_records(output_path(cfg)))
    write_math500(path, [("a", "What is 2+2?", "4"), ("b", "What is 30+30? Think hard.", "60")])
    summary = run(cfg)
    assert summary["generated"] == 1
    after = latest(read_records(output_path(cfg)))
    assert after[("a", 2, 0.0, 0)] == before[("a", 2, 0.0, 0)]
    assert after[("b", 2, 0.0, 0)]["gold"] == "60"
    assert after[("b", 2, 0.0, 0)]["problem_digest"] != before[("b", 2, 0.0, 0)]["problem_digest"]


def test_infinite_taus_are_recorded_and_resumed(tmp_path, data_dir) -> None:
    from eglr.metrics import load_rollouts

    for tau, gated in (("-inf", True), ("inf", False)):
        cfg = compose(GREEDY_L2 + [f"eglr.tau={tau}", f"output_dir={tmp_path}"])
        assert run(cfg)["generated"] == 3
        lines = [json.loads(line) for line in output_path(cfg).read_text().splitlines()][-3:]
        assert all(record["tau"] == tau for record in lines)  # JSON has no infinities
        assert all((record["num_gated"] == record["num_tokens"]) == gated for record in lines)
        assert run(cfg)["generated"] == 0
    rollouts = load_rollouts(tmp_path)
    assert sorted(rollouts["tau"].unique()) == [float("-inf"), float("inf")]
    assert list(rollouts["configuration"].cat.categories) == ["tau=-inf", "tau=inf"]


def test_grading_a_job_written_without_grading(tmp_path, data_dir) -> None:
    base = GREEDY_L2 + [f"output_dir={tmp_path}"]
    ungraded = compose(base + ["grade=false"])
    run(ungraded)
    assert all(record["correct"] is None for record in read_records(output_path(ungraded)))
    summary = run(compose(base))
    assert summary["generated"] == 0 and summary["regraded"] == 3
    records = latest(read_records(output_path(ungraded)))
    assert all(isinstance(record["correct"], bool) and record["grader_version"] for record in records.values())
    # Running without grading again keeps the grades.
    assert run(ungraded)["regraded"] == run(ungraded)["generated"] == 0


# --- Validation at the boundary ----------------------------------------------------------------

@pytest.mark.parametrize("override,message", [
    ("grid.layer_spans=[0,5]", "grid.layer_spans: 5 is outside [0, 4]"),
    ("grid.temperatures=[-0.5]", "grid.temperatures: -0.5"),
    ("grid.layer_spans=[]", "grid.layer_spans is empty"),
    ("grid.temperatures=[]", "grid.temperatures is empty"),
    ("eglr.criterion=median", "eglr.criterion='median'"),
    ("eglr.k_max=-1", "eglr.k_max=-1"),
    ("benchmark.name=math5000", "benchmark.name='math5000'"),
    ("shard=2", "shard=2"),
    ("generation.top_p=0", "generation.top_p=0"),
    ("grid.temperatures=[0.0,1e-37]", "grid.temperatures: 1e-37 is below the minimum"),
    ("grid.temperatures=[0.7,0.7000000001]", "grid.temperatures"),
    ("generation.top_p=abc", "generation.top_p='abc'"),
    ("generation.seed=abc", "generation.seed='abc'"),
    ("generation.max_new_tokens=0", "generation.max_new_tokens=0"),
    ("eglr.tau=abc", "eglr.tau='abc'"),
    ("eglr.tau=nan", "eglr.tau=nan"),
    ("eglr.kv_policy=sideways", "eglr.kv_policy='sideways'"),
    ("engine=tgi", "engine='tgi'"),
    ("device=tpu", "device='tpu'"),
    ("grid.samples=0", "grid.samples=0"),
    ("model.revision=123", "model.revision=123"),
    ("prompt.version=2", "prompt.version=2"),
    ("prompt.template='{question}'", "prompt.template='{question}': takes only"),
    ("prompt.template='Solve it.'", "prompt.template='Solve it.': has no {problem}"),
])
def test_bad_values_are_named_before_a_model_is_loaded(override, message, tmp_path, monkeypatch) -> None:
    import eglr.models

    def must_not_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the configuration was validated")

    monkeypatch.setattr(eglr.models, "load_model", must_not_load)
    with pytest.raises(ValueError) as error:
        run(compose(SMALL + [override, f"output_dir={tmp_path}"]))
    assert message in str(error.value)


def test_several_bad_values_are_all_named(tmp_path) -> None:
    with pytest.raises(ValueError) as error:
        run(compose(SMALL + ["generation.top_p=abc", "generation.batch_size=0", f"output_dir={tmp_path}"]))
    assert "generation.top_p='abc'" in str(error.value) and "generation.batch_size=0" in str(error.value)


def test_cuda_without_a_gpu_is_refused_before_loading(tmp_path, monkeypatch) -> None:
    import torch

    import eglr.models

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(eglr.models, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    with pytest.raises(ValueError, match="device='cuda'.*no CUDA device"):
        run(compose(SMALL + ["device=cuda", f"output_dir={tmp_path}"]))


def test_the_vllm_engine_is_refused_clearly(tmp_path) -> None:
    with pytest.raises(ValueError, match="engine='vllm'.*not available"):
        run(compose(SMALL + ["engine=vllm", f"output_dir={tmp_path}"]))


def test_the_vllm_engine_refuses_a_gpu_index(tmp_path) -> None:
    """vLLM takes no device argument; the GPU is chosen with CUDA_VISIBLE_DEVICES, which the error says."""
    with pytest.raises(ValueError, match=r"device='cuda:1' with engine=vllm.*CUDA_VISIBLE_DEVICES=1 and device=cuda"):
        run(compose(SMALL + ["engine=vllm", "device=cuda:1", f"output_dir={tmp_path}"]))


def test_an_empty_benchmark_file_is_named(tmp_path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(ValueError, match=f"{path}.*no problems"):
        run(compose(SMALL + [f"benchmark.path={path}", f"output_dir={tmp_path}"]))


def test_a_row_without_an_answer_names_row_and_file(tmp_path) -> None:
    path = tmp_path / "bench.jsonl"
    path.write_text(json.dumps({"unique_id": "a", "problem": "1+1?", "answer": "2"}) + "\n"
                    + json.dumps({"unique_id": "b", "problem": "2+2?"}) + "\n")
    with pytest.raises(ValueError, match=f"{path}.*row 2"):
        run(compose(SMALL + [f"benchmark.path={path}", f"output_dir={tmp_path}"]))


def test_batches_are_problem_major_so_a_stopped_job_is_a_complete_grid_on_its_first_problems() -> None:
    from eglr.benchmarks.records import Problem
    from eglr.runner import Cell, plan_batches

    problems = [Problem(f"p{index}", f"question {index}", str(index)) for index in range(5)]
    cells = [Cell(0, 0.0, 1), Cell(0, 0.7, 3), Cell(2, 0.0, 1), Cell(2, 0.7, 2)]
    batches = plan_batches(problems, cells, batch_size=2, base_seed=0)
    order = [rollout for batch in batches for rollout in batch]
    keys = [(r.problem.id, r.layer_span, r.temperature, r.sample) for r in order]
    assert len(keys) == len(set(keys)) == 5 * (1 + 3 + 1 + 2)
    assert all(len(batch) <= 2 for batch in batches)
    assert all(len({(r.layer_span, r.temperature) for r in batch}) == 1 for batch in batches)
    first_block = {"p0", "p1"}
    cut = max(index for index, r in enumerate(order) if r.problem.id in first_block) + 1
    assert {r.problem.id for r in order[:cut]} == first_block
    assert cut == 2 * (1 + 3 + 1 + 2)
    seeds = {(r.problem.id, r.temperature, r.sample): r.seed for r in order if r.temperature}
    assert all(r.seed == seeds[(r.problem.id, r.temperature, r.sample)] for r in order if r.temperature)
