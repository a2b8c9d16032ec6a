"""The gate calibrated from a model's own greedy entropies: deterministic, cached, validated."""
from __future__ import annotations

import json

import pytest
import torch

from eglr import EGLRConfig, generate
from eglr.calibration import Calibration, check_quantile, greedy_entropies, load_or_calibrate
from eglr.step import entropy
from eglr.text import left_padded
from tiny_models import random_prompts, tiny_model

NEW_TOKENS = 12


@pytest.fixture(scope="module")
def model():
    return tiny_model("qwen2")


@pytest.fixture(scope="module")
def prompts():
    return [prompt.tolist() for prompt in random_prompts([9, 14, 6, 11, 13], seed=21)]


@pytest.mark.parametrize("quantile", [0, 1, -0.1, 1.5, float("nan"), "0.9", True, None])
def test_out_of_range_quantile_is_refused_with_its_value(quantile):
    with pytest.raises(ValueError, match=r"tau_quantile must be a number strictly between 0 and 1.*got"):
        check_quantile(quantile)


def test_tau_is_the_interpolated_quantile():
    calibration = Calibration("k", {}, (0.0, 1.0, 2.0, 4.0))
    assert calibration.tau(0.5) == pytest.approx(1.5)
    assert calibration.tau(1 / 3) == pytest.approx(1.0)
    assert calibration.tau(0.999) == pytest.approx(3.994)
    with pytest.raises(ValueError, match="strictly between"):
        calibration.tau(1.0)


def test_entropies_are_those_of_the_greedy_steps(model, prompts):
    """One value per generated token (EOS step included), equal to the engine's own step distributions."""
    values = greedy_entropies(model, prompts, max_new_tokens=NEW_TOKENS, batch_size=2)
    alone, lengths = [], []
    for prompt in prompts:
        input_ids, mask = left_padded([prompt], 0)
        output = generate(model, input_ids, mask, eglr=EGLRConfig(), max_new_tokens=NEW_TOKENS)
        tokens = output.sequences[:, :output.num_tokens[0]]
        lengths.append(output.num_tokens[0])
        full = torch.cat([input_ids, tokens], dim=1)
        logits = model(input_ids=full).logits[:, len(prompt) - 1:-1].float()
        alone.extend(entropy(torch.log_softmax(logits, -1))[0].tolist())
    assert min(lengths) < NEW_TOKENS == max(lengths), "some rows must stop at EOS for this test to mean anything"
    assert len(values) == sum(lengths)
    assert values == pytest.approx(alone, abs=1e-4)


def test_same_tau_on_rerun_and_the_cache_is_reused(model, prompts, tmp_path):
    description = {"model": "tiny-random-qwen2", "prompts": prompts, "max_new_tokens": NEW_TOKENS}
    calls = []

    def compute():
        calls.append(1)
        return greedy_entropies(model, prompts, max_new_tokens=NEW_TOKENS, batch_size=2)

    first = load_or_calibrate(description, compute, directory=tmp_path)
    again = load_or_calibrate(description, compute, directory=tmp_path)
    assert len(calls) == 1 and again == first and again.tau(0.9) == first.tau(0.9)
    recomputed = load_or_calibrate(description, compute, directory=tmp_path / "elsewhere")
    assert len(calls) == 2 and recomputed.tau(0.9) == first.tau(0.9) and recomputed.entropies == first.entropies
    other = load_or_calibrate({**description, "max_new_tokens": NEW_TOKENS - 4}, compute, directory=tmp_path)
    assert len(calls) == 3 and other.key != first.key
    stored = json.loads((tmp_path / f"{first.key}.json").read_text())
    assert stored["description"]["model"] == "tiny-random-qwen2"


def test_a_saved_calibration_is_imported_into_the_cache_and_a_tampered_one_refused(tmp_path):
    import gzip

    from eglr.calibration import import_calibration

    description = {"model": "m", "max_new_tokens": 8}
    made = load_or_calibrate(description, lambda: [0.5, 0.1, 2.0, 1.0], directory=tmp_path / "made")
    saved = tmp_path / f"{made.key}.json.gz"
    saved.write_bytes(gzip.compress((tmp_path / "made" / f"{made.key}.json").read_bytes()))
    cache = tmp_path / "cache"
    assert import_calibration(saved, cache) == cache / f"{made.key}.json"
    reread = load_or_calibrate(description, lambda: pytest.fail("recomputed an imported calibration"), directory=cache)
    assert reread == made and reread.tau(0.5) == made.tau(0.5)
    stored = json.loads((cache / f"{made.key}.json").read_text())
    for tampered, message in (({**stored, "description": {**description, "max_new_tokens": 9}}, "not the digest"),
                              ({**stored, "entropies": [2.0, 0.1]}, "sorted list")):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(tampered))
        with pytest.raises(ValueError, match=message):
            import_calibration(bad, tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_the_calibrated_gate_fires_on_about_one_minus_q_of_greedy_steps(model, prompts, tmp_path):
    calibration = load_or_calibrate(
        {"model": "tiny"}, lambda: greedy_entropies(model, prompts, max_new_tokens=NEW_TOKENS, batch_size=5),
        directory=tmp_path)
    for quantile in (0.5, 0.8):
        tau = calibration.tau(quantile)
        above = sum(value > tau for value in calibration.entropies) / len(calibration.entropies)
        assert above == pytest.approx(1 - quantile, abs=1.5 / len(calibration.entropies))
    assert calibration.tau(0.5) < calibration.tau(0.8)


def test_calibration_problems_are_the_last_ones_and_never_evaluated():
    from eglr.benchmarks.records import Problem
    from eglr.calibration import calibration_problems

    problems = [Problem(id=str(i), problem=f"p{i}", answer=str(i)) for i in range(10)]
    chosen = calibration_problems(problems, {"0", "1", "2"}, 4, "toy")
    assert [p.id for p in chosen] == ["6", "7", "8", "9"]
    with pytest.raises(ValueError, match=r"overlap the evaluated problems \(2 shared, e.g. '6'\)"):
        calibration_problems(problems, {str(i) for i in range(8)}, 4, "toy")
    with pytest.raises(ValueError, match="has 10 problems"):
        calibration_problems(problems, set(), 11, "toy")
    with pytest.raises(ValueError, match="num_prompts must be a positive integer"):
        calibration_problems(problems, set(), 0, "toy")


def test_runner_resolves_tau_from_the_quantile_records_it_and_reuses_the_calibration(tmp_path, monkeypatch, data_dir):
    from conftest import compose
    from eglr.runner import output_path, run

    monkeypatch.setenv("EGLR_CACHE", str(tmp_path / "cache"))
    overrides = ["model=tiny-random-qwen2", "benchmark=math500", "grid.layer_spans=[0,2]", "grid.temperatures=[0.0]",
                 "eglr.tau_quantile=0.75", "calibration.num_prompts=3", "calibration.max_new_tokens=5",
                 "generation.max_new_tokens=4", "limit=2", "progress=false", f"output_dir={tmp_path / 'out'}"]
    cfg = compose(overrides)
    first = run(cfg)
    records = [json.loads(line) for line in output_path(cfg).read_text().splitlines()]
    (stored,) = list((tmp_path / "cache" / "calibration").glob("*.json"))
    calibration = json.loads(stored.read_text())
    from eglr.benchmarks import load_benchmark

    last_three = [problem.id for problem in load_benchmark("math500")[-3:]]
    assert [problem_id for problem_id, _ in calibration["description"]["problems"]] == last_three
    taus = {record["tau"] for record in records}
    assert len(taus) == 1 and all(record["tau_quantile"] == 0.75 for record in records)
    assert taus.pop() == pytest.approx(Calibration("k", {}, tuple(calibration["entropies"])).tau(0.75))
    assert first["generated"] == 4
    again = run(compose(overrides))
    assert again["generated"] == 0 and again["skipped"] == 4  # same tau, same settings hash: nothing to redo
    assert list((tmp_path / "cache" / "calibration").glob("*.json")) == [stored]


def test_runner_refuses_a_bad_quantile_and_overlapping_calibration_prompts(tmp_path, monkeypatch, data_dir):
    from conftest import compose
    from eglr.runner import run

    monkeypatch.setenv("EGLR_CACHE", str(tmp_path / "cache"))
    base = ["model=tiny-random-qwen2", "benchmark=math500", "grid.layer_spans=[0]", "grid.temperatures=[0.0]",
            "progress=false", f"output_dir={tmp_path / 'out'}"]
    with pytest.raises(ValueError, match=r"eglr.tau_quantile=1.5: .*strictly between 0 and 1"):
        run(compose(base + ["eglr.tau_quantile=1.5"]))
    with pytest.raises(ValueError, match="overlap the evaluated problems"):
        run(compose(base + ["eglr.tau_quantile=0.9", "limit=499", "calibration.num_prompts=2"]))
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()
