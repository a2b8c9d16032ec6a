"""eglr.text: chat-templated prompts in, texts and per-prompt statistics out."""
from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from eglr import EGLRConfig, generate
from eglr.text import generate_text, render_prompts
from tiny_models import VOCAB_SIZE, tiny_model

SPECIAL = ["<pad>", "<s>", "</s>", "<|user|>", "<|system|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
PROMPTS = ["w10 w11 w12", "w20 w21 w22 w23 w24 w25 w26", "w30"]
CONFIG = EGLRConfig(layer_span=2, tau=2.0, k_max=2, criterion="argmax")


@pytest.fixture(scope="module")
def tokenizer():
    vocab = {token: index for index, token in enumerate(SPECIAL)}
    vocab.update({f"w{index}": index for index in range(len(SPECIAL), VOCAB_SIZE)})
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        additional_special_tokens=SPECIAL[3:],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama")


def test_prompts_go_through_the_chat_template(tokenizer):
    (ids,) = render_prompts(tokenizer, ["w10 w11"])
    assert tokenizer.convert_ids_to_tokens(ids) == ["<|user|>", "w10", "w11", "<|end|>", "<|assistant|>"]
    assert render_prompts(tokenizer, [[{"role": "user", "content": "w10 w11"}]]) == [ids]
    assert render_prompts(tokenizer, ["w10 w11"], chat_template=False) == [[10, 11]]


def test_texts_match_single_prompt_generation(model, tokenizer):
    results = generate_text(model, tokenizer, PROMPTS, eglr=CONFIG, max_new_tokens=12, batch_size=2)
    assert len(results) == len(PROMPTS)
    for prompt, result in zip(PROMPTS, results):
        (ids,) = render_prompts(tokenizer, [prompt])
        alone = generate(model, torch.tensor([ids]), eglr=CONFIG, max_new_tokens=12)
        tokens = alone.sequences[0, :alone.num_tokens[0]].tolist()
        assert result.text == tokenizer.decode(tokens, skip_special_tokens=True)
        assert result.text.split() == [f"w{token}" for token in tokens if token >= len(SPECIAL)]
        assert (result.num_tokens, result.num_gated, result.num_reapplications) == (
            alone.num_tokens[0], alone.num_gated[0], alone.num_reapplications[0])
        assert result.finish_reason == alone.finish_reasons[0]
    assert sum(result.num_gated for result in results) > 0


def test_sampled_texts_do_not_depend_on_batch_size(model, tokenizer):
    kwargs = dict(eglr=CONFIG, max_new_tokens=10, temperature=1.0, seed=5)
    one_by_one = generate_text(model, tokenizer, PROMPTS, batch_size=1, **kwargs)
    all_at_once = generate_text(model, tokenizer, PROMPTS, batch_size=3, **kwargs)
    for single, batched in zip(one_by_one, all_at_once):
        assert (single.text, single.num_gated, single.num_reapplications) == (
            batched.text, batched.num_gated, batched.num_reapplications)
        assert single.sum_logprob == pytest.approx(batched.sum_logprob, abs=1e-4)
    other_seed = generate_text(model, tokenizer, PROMPTS, batch_size=3, **{**kwargs, "seed": 6})
    assert [r.text for r in other_seed] != [r.text for r in all_at_once]


def test_bad_prompts_are_rejected(model, tokenizer):
    with pytest.raises(ValueError, match="single string"):
        generate_text(model, tokenizer, "w10", max_new_tokens=2)
    with pytest.raises(ValueError, match="chat_template=True"):
        generate_text(model, tokenizer, [[{"role": "user", "content": "w10"}]], max_new_tokens=2, chat_template=False)
    with pytest.raises(ValueError, match="batch_size"):
        generate_text(model, tokenizer, PROMPTS, max_new_tokens=2, batch_size=0)
