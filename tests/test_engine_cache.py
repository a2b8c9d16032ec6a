"""Re-applying the top layers through the KV cache equals cache-free references.

The reference for "the top L layers applied again to h at position t" is a plain
forward of those layers over the whole sequence, without any cache, in which the
layer input at position t is replaced by h: causal attention leaves positions
< t as they were, and position t then attends to exactly what the cached
re-application attends to. Masks and rotary embeddings for the reference come
from the model's own cache-free forward, on a copy of the model that carries
none of the engine's hooks.
"""
from __future__ import annotations

import copy

import pytest
import torch
from transformers import CohereConfig, CohereForCausalLM, DynamicCache, GraniteConfig, GraniteForCausalLM

from eglr.cache import preallocated_cache
from eglr.logits import decoder_layers, head_logits
from eglr.recursion import TopLayerRecursion
from tiny_models import ARCHITECTURES, left_pad, positions, random_prompts, tiny_model

LAYER_SPAN = 2
TOLERANCE = dict(rtol=1e-5, atol=1e-5)
# transformers' own cache (concatenates) and the engine's (writes in place; a small capacity makes it grow).
CACHES = {
    "dynamic": lambda config: DynamicCache(config=config),
    "preallocated": lambda config: preallocated_cache(config, capacity=4),
}



def top_layers_reference(reference_model, input_ids, attention_mask, replacements: dict[int, torch.Tensor]) -> torch.Tensor:
    """Outputs of the top LAYER_SPAN layers over the whole sequence, cache-free, after
    replacing their input at each position in ``replacements`` ([batch, dim] each)."""
    top = list(decoder_layers(reference_model))[-LAYER_SPAN:]
    calls = []
    handles = [
        layer.register_forward_pre_hook(lambda module, args, kwargs: calls.append((args, kwargs)), with_kwargs=True)
        for layer in top
    ]
    try:
        reference_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions(attention_mask),
                        use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    hidden = calls[0][0][0].clone()
    for position, vector in replacements.items():
        hidden[:, position] = vector
    for layer, (args, kwargs) in zip(top, calls):
        assert kwargs.get("cache") is None
        hidden = layer(hidden, *args[1:], **kwargs)
    return hidden


class CachedRun:
    """The engine's own machinery, driven by hand: prefill, then one-token steps with hooks."""

    def __init__(self, model, input_ids, attention_mask, kv_policy, cache_kind):
        self.model = model
        self.mask = attention_mask
        self.cache = CACHES[cache_kind](model.config)
        self.recursion = TopLayerRecursion(model, self.cache, LAYER_SPAN, kv_policy).__enter__()
        prompt_positions = positions(attention_mask)
        model(input_ids=input_ids[:, :-1], attention_mask=attention_mask[:, :-1], position_ids=prompt_positions[:, :-1],
              cache=self.cache, use_cache=True)
        self.recursion.end_step()
        self.position = prompt_positions[:, -1:]
        self.logits = self._forward(input_ids[:, -1:])

    def _forward(self, tokens):
        output = self.model(input_ids=tokens, attention_mask=self.mask, position_ids=self.position,
                            cache=self.cache, use_cache=True, logits_to_keep=1)
        return output.logits[:, -1]

    def next_token(self, tokens):
        self.recursion.end_step()
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        self.position = self.position + 1
        self.logits = self._forward(tokens[:, None])


@pytest.fixture(scope="module")
def batch():
    return left_pad(random_prompts([13, 17, 10], seed=3))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@torch.inference_mode()
@pytest.mark.parametrize("cache_kind", CACHES)
def test_reapplication_and_next_token_match_cache_free_references(architecture, batch, cache_kind):
    model = tiny_model(architecture)
    reference_model = copy.deepcopy(model)
    input_ids, mask = batch
    last = input_ids.shape[1] - 1
    run = CachedRun(model, input_ids, mask, "overwrite", cache_kind)
    h0 = run.recursion.hidden

    plain = top_layers_reference(reference_model, input_ids, mask, {})
    torch.testing.assert_close(h0[:, 0], plain[:, last], **TOLERANCE)
    torch.testing.assert_close(head_logits(model, h0)[:, 0], run.logits, **TOLERANCE)

    h1 = run.recursion.reapply(h0)
    torch.testing.assert_close(h1[:, 0], top_layers_reference(reference_model, input_ids, mask, {last: h0[:, 0]})[:, last],
                               **TOLERANCE)
    assert not torch.allclose(h1, h0, atol=1e-3)
    h2 = run.recursion.reapply(h1)
    torch.testing.assert_close(h2[:, 0], top_layers_reference(reference_model, input_ids, mask, {last: h1[:, 0]})[:, last],
                               **TOLERANCE)

    next_tokens = head_logits(model, h2)[:, 0].argmax(-1)
    run.next_token(next_tokens)
    extended_ids = torch.cat([input_ids, next_tokens[:, None]], dim=1)
    extended_mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    reference = top_layers_reference(reference_model, extended_ids, extended_mask, {last: h1[:, 0]})
    torch.testing.assert_close(run.recursion.hidden[:, 0], reference[:, last + 1], **TOLERANCE)


@pytest.mark.parametrize("architecture", ["mistral", "gemma2"])
@torch.inference_mode()
@pytest.mark.parametrize("cache_kind", CACHES)
def test_keep_first_next_token_sees_first_pass(architecture, batch, cache_kind):
    model = tiny_model(architecture)
    reference_model = copy.deepcopy(model)
    input_ids, mask = batch
    run = CachedRun(model, input_ids, mask, "keep_first", cache_kind)
    h1 = run.recursion.reapply(run.recursion.hidden)
    run.recursion.reapply(h1)
    next_tokens = torch.tensor([5, 6, 7])
    run.next_token(next_tokens)
    extended_ids = torch.cat([input_ids, next_tokens[:, None]], dim=1)
    extended_mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    reference = top_layers_reference(reference_model, extended_ids, extended_mask, {})
    torch.testing.assert_close(run.recursion.hidden[:, 0], reference[:, -1], **TOLERANCE)
    torch.testing.assert_close(run.logits, reference_model(extended_ids, attention_mask=extended_mask,
                                                 position_ids=positions(extended_mask)).logits[:, -1], **TOLERANCE)


@pytest.mark.parametrize("architecture", ["llama", "gemma2"])
@torch.inference_mode()
@pytest.mark.parametrize("cache_kind", CACHES)
def test_frozen_rows_keep_their_previous_iterate(architecture, batch, cache_kind):
    """Rows excluded from an iteration keep the keys/values of the iterate they stopped at."""
    model = tiny_model(architecture)
    reference_model = copy.deepcopy(model)
    input_ids, mask = batch
    last = input_ids.shape[1] - 1
    run = CachedRun(model, input_ids, mask, "overwrite", cache_kind)
    h0 = run.recursion.hidden
    h1 = run.recursion.reapply(h0)
    frozen = torch.tensor([True, False, True])
    run.recursion.reapply(h1, keep_rows=frozen)
    next_tokens = torch.tensor([9, 10, 11])
    run.next_token(next_tokens)
    extended_ids = torch.cat([input_ids, next_tokens[:, None]], dim=1)
    extended_mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    after_first = top_layers_reference(reference_model, extended_ids, extended_mask, {last: h0[:, 0]})
    after_second = top_layers_reference(reference_model, extended_ids, extended_mask, {last: h1[:, 0]})
    expected = torch.where(frozen[:, None], after_first[:, -1], after_second[:, -1])
    torch.testing.assert_close(run.recursion.hidden[:, 0], expected, **TOLERANCE)
    assert not torch.allclose(after_first[:, -1], after_second[:, -1], atol=1e-3)


@torch.inference_mode()
def test_head_matches_model_logits_with_softcapping():
    model = tiny_model("gemma2")
    input_ids, mask = left_pad(random_prompts([11, 14], seed=5))
    run = CachedRun(model, input_ids, mask, "overwrite", "preallocated")
    ours = head_logits(model, run.recursion.hidden)[:, 0]
    torch.testing.assert_close(ours, run.logits, **TOLERANCE)
    uncapped = model.lm_head(model.model.norm(run.recursion.hidden))[:, 0]
    cap = model.config.final_logit_softcapping
    assert uncapped.abs().max() > 0.5 * cap, "soft-capping must be active for this check to mean anything"
    assert not torch.allclose(uncapped, run.logits, atol=1e-2)


@pytest.mark.parametrize("family", ["cohere", "granite"])
@torch.inference_mode()
def test_head_handles_logit_scales(family):
    """Cohere multiplies the logits by ``logit_scale``, Granite divides them by ``logits_scaling``."""
    common = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    if family == "cohere":
        model_class, config = CohereForCausalLM, CohereConfig(**common, logit_scale=0.25)
    else:
        model_class, config = GraniteForCausalLM, GraniteConfig(**common, logits_scaling=4.0)
    torch.manual_seed(0)
    model = model_class(config).eval()
    input_ids = torch.randint(3, 64, (2, 9))
    run = CachedRun(model, input_ids, torch.ones_like(input_ids), "overwrite", "preallocated")
    torch.testing.assert_close(head_logits(model, run.recursion.hidden)[:, 0], run.logits, **TOLERANCE)
    unscaled = model.lm_head(model.model.norm(run.recursion.hidden))[:, 0]
    torch.testing.assert_close(unscaled / 4.0, run.logits, **TOLERANCE)


@torch.inference_mode()
def test_reapply_refuses_a_multi_token_forward():
    model = tiny_model("llama")
    input_ids, mask = left_pad(random_prompts([11, 14], seed=5))
    with TopLayerRecursion(model, DynamicCache(config=model.config), LAYER_SPAN) as recursion:
        with pytest.raises(RuntimeError, match="forward pass"):
            recursion.reapply(torch.zeros(2, 1, model.config.hidden_size))
        model(input_ids=input_ids, attention_mask=mask, cache=recursion.cache, use_cache=True)
        with pytest.raises(RuntimeError, match="one new position"):
            recursion.reapply(recursion.hidden)
