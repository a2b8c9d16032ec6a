"""Stop and pad tokens are resolved once, at model loading, and every generation path reads them there."""
from __future__ import annotations

import pytest
import torch

from conftest import compose
from eglr import EGLRConfig, generate
from eglr.models import load_model, resolve_special_tokens
from eglr.text import generate_batch
from tiny_models import tiny_model


class Tokenizer:
    """The two attributes resolve_special_tokens reads, and the pad token it may set."""

    def __init__(self, eos: int | None, pad: int | None) -> None:
        self.eos_token_id, self.pad_token_id, self.pad_token = eos, pad, None

    def convert_ids_to_tokens(self, token: int) -> str:
        return f"<{token}>"


def test_stop_tokens_are_the_union_and_pad_falls_back_to_the_first_stop():
    model = tiny_model("llama")
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = [7, 8], None
    tokenizer = Tokenizer(eos=9, pad=None)
    resolve_special_tokens(model, tokenizer, extra_eos_token_ids=[8, 10])
    assert model.generation_config.eos_token_id == [9, 7, 8, 10]
    assert model.generation_config.pad_token_id == 9 and tokenizer.pad_token == "<9>"
    model.generation_config.eos_token_id = None
    with pytest.raises(ValueError, match="end-of-sequence"):
        resolve_special_tokens(model, Tokenizer(eos=None, pad=None))


def test_the_engine_needs_a_pad_it_is_told_of():
    model = tiny_model("llama")
    model.generation_config.pad_token_id = None
    with pytest.raises(ValueError, match="resolve_special_tokens"):
        generate(model, torch.tensor([[5, 6, 7]]), eglr=EGLRConfig(), max_new_tokens=2)


def test_load_model_resolves_and_the_batch_path_uses_them(data_dir):
    cfg = compose(["model=tiny-random-qwen2"])
    model, tokenizer = load_model(cfg.model, device="cpu")
    stops = model.generation_config.eos_token_id
    assert tokenizer.eos_token_id in stops and model.generation_config.pad_token_id == tokenizer.pad_token_id
    prompt = [tokenizer("1+1=", add_special_tokens=False)["input_ids"]]
    free = generate(model, torch.tensor(prompt), eglr=EGLRConfig(), max_new_tokens=6, eos_token_id=[])
    first = int(free.sequences[0, 2])
    model.generation_config.eos_token_id = [first]
    (result,) = generate_batch(model, tokenizer, prompt, eglr=EGLRConfig(), max_new_tokens=6)
    expected = free.sequences[0].tolist().index(first) + 1
    assert result.num_tokens == expected and result.finish_reason == "eos"
