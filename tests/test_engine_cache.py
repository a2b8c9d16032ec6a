"""Re-applying the top layers through the KV cache equals cache-free references (tests/cache_reference.py)."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from transformers import CohereConfig, CohereForCausalLM, DynamicCache, GraniteConfig, GraniteForCausalLM

from eglr import EGLRConfig, generate
from eglr.cache import preallocated_cache
from cache_reference import LAYER_SPAN, CachedRun, block_input_reference, top_layers_reference
from eglr.logits import head_logits
from eglr.step import kl_divergence, norm_matched
from eglr.top_layers import TopLayers
from tiny_models import ARCHITECTURES, left_pad, positions, random_prompts, tiny_model

TOLERANCE = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def batch():
    return left_pad(random_prompts([13, 17, 10], seed=3))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@torch.inference_mode()
def test_reapplication_and_next_token_match_cache_free_references(architecture, batch):
    model = tiny_model(architecture)
    reference_model = copy.deepcopy(model)
    input_ids, mask = batch
    last = input_ids.shape[1] - 1
    run = CachedRun(model, input_ids, mask)
    h0 = run.top.hidden

    plain = top_layers_reference(reference_model, input_ids, mask, {})
    torch.testing.assert_close(h0[:, 0], plain[:, last], **TOLERANCE)
    torch.testing.assert_close(head_logits(model, h0)[:, 0], run.logits, **TOLERANCE)

    h1 = run.top.reapply(h0)
    torch.testing.assert_close(h1[:, 0], top_layers_reference(reference_model, input_ids, mask, {last: h0[:, 0]})[:, last],
                               **TOLERANCE)
    assert not torch.allclose(h1, h0, atol=1e-3)
    h2 = run.top.reapply(h1)
    torch.testing.assert_close(h2[:, 0], top_layers_reference(reference_model, input_ids, mask, {last: h1[:, 0]})[:, last],
                               **TOLERANCE)

    next_tokens = head_logits(model, h2)[:, 0].argmax(-1)
    run.next_token(next_tokens)
    extended_ids = torch.cat([input_ids, next_tokens[:, None]], dim=1)
    extended_mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    reference = top_layers_reference(reference_model, extended_ids, extended_mask, {last: h1[:, 0]})
    torch.testing.assert_close(run.top.hidden[:, 0], reference[:, last + 1], **TOLERANCE)


@pytest.mark.parametrize("architecture", ["mistral", "gemma2"])
@torch.inference_mode()
def test_keep_first_next_token_sees_first_pass(architecture, batch):
    model = tiny_model(architecture)
    reference_model = copy.deepcopy(model)
    input_ids, mask = batch
    run = CachedRun(model, input_ids, mask)
    run.top.keep_first_pass(torch.tensor([0, 1, 2]))
    h1 = run.top.reapply(run.top.hidden)
    run.top.reapply(h1)
    run.top.restore_first_pass()
    next_tokens = torch.tensor([5, 6, 7])
    run.next_token(next_tokens)
    extended_ids = torch.cat([input_ids, next_tokens[:, None]], dim=1)
    extended_mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    reference = top_layers_reference(reference_model, extended_ids, extended_mask, {})
    torch.testing.assert_close(run.top.hidden[:, 0], reference[:, -1], **TOLERANCE)
    torch.testing.assert_close(run.logits, reference_model(extended_ids, attention_mask=extended_mask,
                                                 position_ids=positions(extended_mask)).logits[:, -1], **TOLERANCE)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@torch.inference_mode()
def test_rows_left_out_of_a_reapplication_are_untouched(architecture, batch):
    """A re-application on some rows computes exactly what it computes for those rows in a whole-batch one,
    and rows left out keep the keys/values of the iterate they stopped at (here: the normal pass for row 1,
    the first re-application for row 0, the second for row 2)."""
    model = tiny_model(architecture)
    reference_model = copy.deepcopy(model)
    input_ids, mask = batch
    last = input_ids.shape[1] - 1
    run = CachedRun(model, input_ids, mask)
    h0 = run.top.hidden
    first_rows = torch.tensor([0, 2])
    h1 = run.top.reapply(h0[first_rows], first_rows)
    reference_h1 = top_layers_reference(reference_model, input_ids, mask, {last: h0[:, 0]})[:, last]
    torch.testing.assert_close(h1[:, 0], reference_h1[first_rows], **TOLERANCE)
    second_rows = torch.tensor([2])
    h2 = run.top.reapply(h1[1:], second_rows)
    replaced = h0[:, 0].clone()
    replaced[2] = h1[1, 0]
    reference_h2 = top_layers_reference(reference_model, input_ids, mask, {last: replaced})[:, last]
    torch.testing.assert_close(h2[:, 0], reference_h2[second_rows], **TOLERANCE)

    next_tokens = torch.tensor([9, 10, 11])
    run.next_token(next_tokens)
    extended_ids = torch.cat([input_ids, next_tokens[:, None]], dim=1)
    extended_mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    stopped_at = {0: h0[0, 0], 1: None, 2: h1[1, 0]}  # the input of the last re-application each row had
    plain = top_layers_reference(reference_model, extended_ids, extended_mask, {})
    expected = []
    for row, vector in stopped_at.items():
        if vector is None:
            expected.append(plain[row, -1])
        else:
            replacement = h0[:, 0].clone()
            replacement[row] = vector
            expected.append(top_layers_reference(reference_model, extended_ids, extended_mask,
                                                 {last: replacement})[row, -1])
    torch.testing.assert_close(run.top.hidden[:, 0], torch.stack(expected), **TOLERANCE)
    # The comparison discriminates: keys/values of a re-applied position change what the next one computes.
    assert not torch.allclose(expected[0], plain[0, -1], atol=1e-3)
    assert not torch.allclose(expected[2], plain[2, -1], atol=1e-3)


@torch.inference_mode()
def test_head_matches_model_logits_with_softcapping():
    model = tiny_model("gemma2")
    input_ids, mask = left_pad(random_prompts([11, 14], seed=5))
    run = CachedRun(model, input_ids, mask)
    ours = head_logits(model, run.top.hidden)[:, 0]
    torch.testing.assert_close(ours, run.logits, **TOLERANCE)
    uncapped = model.lm_head(model.model.norm(run.top.hidden))[:, 0]
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
    run = CachedRun(model, input_ids, torch.ones_like(input_ids))
    torch.testing.assert_close(head_logits(model, run.top.hidden)[:, 0], run.logits, **TOLERANCE)
    unscaled = model.lm_head(model.model.norm(run.top.hidden))[:, 0]
    torch.testing.assert_close(unscaled / 4.0, run.logits, **TOLERANCE)


@torch.inference_mode()
def test_reapply_refuses_a_multi_token_forward_and_a_foreign_cache():
    model = tiny_model("llama")
    input_ids, mask = left_pad(random_prompts([11, 14], seed=5))
    with pytest.raises(ValueError, match="preallocated_cache"):
        TopLayers(model, DynamicCache(config=model.config), LAYER_SPAN)
    with TopLayers(model, preallocated_cache(model.config, capacity=32), LAYER_SPAN) as top:
        with pytest.raises(RuntimeError, match="forward pass"):
            top.reapply(torch.zeros(2, 1, model.config.hidden_size))
        model(input_ids=input_ids, attention_mask=mask, cache=top.cache, use_cache=True)
        with pytest.raises(RuntimeError, match="one new position"):
            top.reapply(top.hidden)


@pytest.mark.parametrize("architecture", ["qwen2", "gemma2"])
@torch.inference_mode()
def test_norm_matched_reinjection_matches_its_reference(architecture, batch):
    """``reinject=norm_matched``: the re-application's input is h rescaled to the norm of the top block's input."""
    model = tiny_model(architecture)
    reference_model = copy.deepcopy(model)
    input_ids, mask = batch
    last = input_ids.shape[1] - 1
    run = CachedRun(model, input_ids, mask)
    block_input = block_input_reference(reference_model, input_ids, mask)[:, last]
    torch.testing.assert_close(run.top.block_input[:, 0], block_input, **TOLERANCE)
    h0 = run.top.hidden
    scaled = norm_matched(h0, run.top.block_input)
    torch.testing.assert_close(scaled.norm(dim=-1), block_input.norm(dim=-1)[:, None], **TOLERANCE)
    torch.testing.assert_close(scaled / scaled.norm(dim=-1, keepdim=True), h0 / h0.norm(dim=-1, keepdim=True),
                               **TOLERANCE)
    h1 = run.top.reapply(scaled)
    expected = top_layers_reference(reference_model, input_ids, mask, {last: scaled[:, 0]})[:, last]
    torch.testing.assert_close(h1[:, 0], expected, **TOLERANCE)
    raw = top_layers_reference(reference_model, input_ids, mask, {last: h0[:, 0]})[:, last]
    assert not torch.allclose(h1[:, 0], raw, atol=1e-3)


@pytest.mark.parametrize("reinject", ["raw", "norm_matched"])
@torch.inference_mode()
def test_engine_first_token_is_the_reference_iterate(reinject):
    """One generated token at tau = -inf, k_max = 2, eps = 0: the engine's token and statistics are those of the
    cache-free iterates h1 = top(x(h0)), h2 = top(x(h1)) with x the chosen re-injection."""
    model = tiny_model("llama")
    reference_model = copy.deepcopy(model)
    input_ids, mask = left_pad(random_prompts([13, 17, 10], seed=4))
    last = input_ids.shape[1] - 1
    config = EGLRConfig(layer_span=LAYER_SPAN, tau=-math.inf, k_max=2, eps=0.0, reinject=reinject)
    output = generate(model, input_ids, mask, eglr=config, max_new_tokens=1)
    block_input = block_input_reference(reference_model, input_ids, mask)[:, last]
    hidden = top_layers_reference(reference_model, input_ids, mask, {})[:, last]
    log_probs = []
    for _ in range(2):
        layer_input = norm_matched(hidden, block_input) if reinject == "norm_matched" else hidden
        hidden = top_layers_reference(reference_model, input_ids, mask, {last: layer_input})[:, last]
        log_probs.append(torch.log_softmax(head_logits(reference_model, hidden).float(), dim=-1))
    assert output.sequences[:, 0].tolist() == log_probs[-1].argmax(-1).tolist()
    assert output.num_reapplications == [2, 2, 2] and output.reapplication_histogram == [[0, 1]] * 3
    expected_kl = kl_divergence(log_probs[1], log_probs[0])
    assert output.mean_stop_kl == pytest.approx(expected_kl.tolist(), rel=1e-3, abs=1e-6)
