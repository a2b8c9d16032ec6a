"""vLLM + EGLR against our engine on the real Qwen2.5-Coder-0.5B-Instruct (fp32), when its weights are
in the cache (``make real-models`` / ``python -m eglr.weights fetch``).

Four chat-rendered GSM8K-style prompts of different lengths, at most two decoded at once (so
prefills join running decodes); greedy tokens and per-row gated, re-application and converged counts
must equal eglr.engine.generate's at L = 0, under a finite tau (the median of the model's own
entropies on these prompts) and at every step with early stopping.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL = "qwen2.5-coder-0.5b-instruct"
MAX_NEW_TOKENS = 20
QUESTIONS = [
    "What is 7 times 8?",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts in total does it take?",
    "Write one word that rhymes with cat.",
]


@pytest.fixture(scope="module")
def real():
    from omegaconf import OmegaConf

    from eglr.models import load_model
    from eglr.weights import WeightsMissing, checkpoint_dir

    model_cfg = OmegaConf.load(REPO_ROOT / "configs" / "model" / f"{MODEL}.yaml")
    try:
        path = checkpoint_dir(model_cfg)
    except WeightsMissing as error:
        pytest.skip(f"the real model's weights are not in the cache: {error}")
    model, tokenizer = load_model(model_cfg, device="cpu")
    prompts = []
    for question in QUESTIONS:
        text = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                             add_generation_prompt=True)
        prompts.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    from eglr.step import EGLRConfig
    from eglr_vllm.engine import EGLREngine

    stops = list(model.generation_config.eos_token_id)
    engine = EGLREngine(str(path), eglr=EGLRConfig(), stop_token_ids=stops, max_model_len=512, max_num_seqs=2,
                        skip_tokenizer_init=True)
    yield model, prompts, engine
    del engine


def reference(model, prompts, config, **kwargs):
    from eglr.engine import generate
    from eglr.text import left_padded

    input_ids, attention_mask = left_padded(prompts, model.generation_config.pad_token_id)
    return generate(model, input_ids, attention_mask, eglr=config, max_new_tokens=MAX_NEW_TOKENS, **kwargs)


def test_real_model_greedy_parity(real) -> None:
    from eglr.step import EGLRConfig
    from eglr_vllm.engine import Request

    model, prompts, engine = real
    plain = reference(model, prompts, EGLRConfig(), return_entropies=True)
    tau = float(torch.tensor([value for row in plain.step_entropies for value in row]).median())
    settings = {
        "L0": (EGLRConfig(), plain),
        "finite_tau": (EGLRConfig(layer_span=4, tau=tau, k_max=3, eps=1e-3), None),
        "every_step": (EGLRConfig(layer_span=2, tau=-math.inf, k_max=3, eps=1e-2), None),
    }
    for name, (config, output) in settings.items():
        output = output or reference(model, prompts, config)
        engine.configure(config)
        completions = engine.generate([Request(ids, MAX_NEW_TOKENS) for ids in prompts])
        for row, completion in enumerate(completions):
            count = output.num_tokens[row]
            assert completion.token_ids == output.sequences[row, :count].tolist(), f"{name} row {row}"
            stats = completion.statistics
            assert (stats.gated, stats.reapplications, stats.converged) == (
                output.num_gated[row], output.num_reapplications[row], output.num_converged[row]), f"{name} row {row}"
            assert completion.sum_logprob == pytest.approx(output.sum_logprob[row], rel=1e-3, abs=1e-3)
        gated, steps = sum(output.num_gated), sum(output.num_tokens)
        assert (gated == 0) if name == "L0" else (0 < gated < steps if name == "finite_tau" else gated == steps)
