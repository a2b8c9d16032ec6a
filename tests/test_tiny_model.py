"""The committed `tiny-math` checkpoint, its tokenizer, and the script that trains it."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from eglr.benchmarks import arith
from eglr.benchmarks.prompts import DEFAULT_INSTRUCTION, render_prompt

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSET_DIR = REPO_ROOT / "eglr" / "assets" / "tiny-math"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("train_tiny_model", REPO_ROOT / "scripts" / "train_tiny_model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(ASSET_DIR)


@pytest.fixture(scope="module")
def model():
    return AutoModelForCausalLM.from_pretrained(ASSET_DIR).eval()


@pytest.fixture(scope="module")
def record():
    return json.loads((ASSET_DIR / "training.json").read_text())


@pytest.fixture
def one_thread():
    """Training determinism is promised for a pinned thread count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_digits_are_single_tokens(tokenizer):
    for digit in "0123456789":
        assert len(tokenizer(digit, add_special_tokens=False)["input_ids"]) == 1
    ids = tokenizer("x = 90817 + 2", add_special_tokens=False)["input_ids"]
    pieces = [tokenizer.decode([token]) for token in ids]
    assert [piece for piece in pieces if piece.strip().isdigit()] == ["9", "0", "8", "1", "7", "2"]


@pytest.mark.parametrize(
    "text",
    [
        "Ava has 12 apples.\n12 + 5 = 17",
        "  leading and  double  spaces\t\ttabs\n\n",
        "Let $f(x) = \\frac{x^2}{\\sqrt{3}}$, so \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.",
        "Janet’s ducks — 16 eggs, café, 日本語, emoji 🦆, ∑_{i=1}^n i²",
    ],
)
def test_decode_inverts_encode(tokenizer, text):
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_special_tokens(tokenizer, model):
    assert tokenizer.pad_token == "<|pad|>" and tokenizer.eos_token == "<|end|>"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert model.config.eos_token_id == model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert len(tokenizer) <= model.config.vocab_size < 1000


def test_chat_template_renders(tokenizer):
    expected = f"<|user|>\nWhat is 2 + 3?\n{DEFAULT_INSTRUCTION}<|end|>\n<|assistant|>\n"
    assert render_prompt(tokenizer, "What is 2 + 3?") == expected
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "\\boxed{1}"},
    ]
    text = tokenizer.apply_chat_template(conversation, tokenize=False)
    assert text == "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n\\boxed{1}<|end|>\n"
    with pytest.raises(Exception, match="unknown role"):
        tokenizer.apply_chat_template([{"role": "robot", "content": "x"}], tokenize=False)


def test_script_rebuilds_the_committed_tokenizer(script, tokenizer):
    rebuilt = script.build_tokenizer()
    assert rebuilt.get_vocab() == tokenizer.get_vocab()
    text = render_prompt(tokenizer, arith.test_rows()[7]["problem"])
    assert rebuilt(text)["input_ids"] == tokenizer(text)["input_ids"]


def test_training_example_is_the_inference_prompt_then_the_solution(script, tokenizer):
    row = arith.test_rows()[0]
    input_ids, labels = script.encode_example(tokenizer, row)
    prompt_length = sum(label == script.IGNORE_INDEX for label in labels)
    assert labels[prompt_length:] == input_ids[prompt_length:]
    assert tokenizer.decode(input_ids[:prompt_length]) == render_prompt(tokenizer, row["problem"])
    assert tokenizer.decode(input_ids[prompt_length:]) == row["solution"] + tokenizer.eos_token


def test_checkpoint_is_small_and_records_its_training(record):
    assert (ASSET_DIR / "model.safetensors").stat().st_size < 2_000_000
    assert record["command"].startswith("python scripts/train_tiny_model.py")
    assert f"--seed {record['settings']['seed']}" in record["command"]
    assert 0.40 <= record["greedy_accuracy"] <= 0.75
    assert record["pass_at_8"] >= record["greedy_accuracy"] + 0.1


def test_checkpoint_greedy_generates_boxed_answers(script, model, tokenizer):
    rows = arith.test_rows()[:6]
    completions = script.complete(model, tokenizer, [row["problem"] for row in rows], model.generation_config)
    answers = [script.boxed_integer(text) for text in completions]
    assert all(answer is not None for answer in answers), completions
    assert any(answer == int(row["answer"]) for answer, row in zip(answers, rows)), completions
    # Left padding in a batch must not change what a prompt decodes to.
    alone = script.complete(model, tokenizer, [rows[0]["problem"]], model.generation_config)
    assert alone == completions[:1]


def test_boxed_integer_extraction(script):
    assert script.boxed_integer("1 + 2 = 3\nThe answer is \\boxed{3}") == 3
    assert script.boxed_integer("\\boxed{4} then \\boxed{ 12 }") == 12
    assert script.boxed_integer("The answer is \\boxed{x}") is None
    assert script.boxed_integer("no box 5") is None


def test_training_is_deterministic_per_seed(script, one_thread):
    settings = script.TrainSettings(steps=30, batch_size=4, warmup_steps=5)
    first, _, first_losses = script.train(settings)
    second, _, second_losses = script.train(settings)
    assert first_losses == second_losses
    for (name, weight), (_, other) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(weight, other), name
    reseeded, _, _ = script.train(script.TrainSettings(steps=30, batch_size=4, warmup_steps=5, seed=1))
    assert not torch.equal(first.model.layers[0].mlp.up_proj.weight, reseeded.model.layers[0].mlp.up_proj.weight)
    assert first_losses[-1] < first_losses[0]


def test_training_rejects_bad_settings(script):
    with pytest.raises(ValueError, match="0"):
        script.train(script.TrainSettings(steps=0))
    with pytest.raises(ValueError, match="100"):
        script.build_tokenizer(vocab_size=100)


@pytest.mark.slow
def test_retraining_reproduces_the_committed_accuracy(script, record, tmp_path, one_thread):
    settings = record["settings"]
    argv = ["--out", str(tmp_path)]
    for name, value in settings.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    argv += ["--threads", str(record["threads"])]
    retrained = script.main(argv)
    assert abs(retrained["greedy_accuracy"] - record["greedy_accuracy"]) <= 0.01
