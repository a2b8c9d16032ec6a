"""The preallocated KV cache shows attention exactly what transformers' dynamic cache shows it."""
from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from eglr.cache import PreallocatedLayer, PreallocatedSlidingWindowLayer, preallocated_cache
from tiny_models import ARCHITECTURES, SLIDING_WINDOW, left_pad, positions, random_prompts, tiny_model

STEPS = SLIDING_WINDOW + 6



class Decoder:
    """Greedy one-token-at-a-time decoding of a left-padded batch with a given cache."""

    def __init__(self, model, cache, input_ids, attention_mask):
        self.model, self.cache, self.mask = model, cache, attention_mask
        self.position = positions(attention_mask)
        self.logits = self._forward(input_ids)
        self.position = self.position[:, -1:]

    def _forward(self, tokens):
        output = self.model(input_ids=tokens, attention_mask=self.mask, position_ids=self.position,
                            cache=self.cache, use_cache=True, logits_to_keep=1)
        return output.logits[:, -1]

    def step(self, tokens):
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        self.position = self.position + 1
        self.logits = self._forward(tokens[:, None])

    def crop(self, tokens_to_remove):
        for layer in self.cache.layers:
            layer.crop(-tokens_to_remove)
        self.mask = self.mask[:, :-tokens_to_remove]
        self.position = self.position - tokens_to_remove


def assert_same_state(dynamic: DynamicCache, preallocated: DynamicCache) -> None:
    for index, (expected, actual) in enumerate(zip(dynamic.layers, preallocated.layers)):
        assert actual.get_seq_length() == expected.get_seq_length(), index
        assert actual.get_mask_sizes(1) == expected.get_mask_sizes(1), index
        assert torch.equal(actual.keys, expected.keys), index
        assert torch.equal(actual.values, expected.values), index


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
DEVICES = [("cpu", torch.float32), pytest.param("cuda", torch.bfloat16, marks=CUDA, id="cuda-bfloat16")]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("device, dtype", DEVICES)
@torch.inference_mode()
def test_decoding_is_bit_identical_to_the_dynamic_cache(architecture, device, dtype):
    """Logits and visible keys/values match DynamicCache exactly, past the sliding window and
    through buffer growth (the capacity is smaller than the prompt)."""
    model = tiny_model(architecture, dtype=dtype).to(device)
    input_ids, mask = (tensor.to(device) for tensor in left_pad(random_prompts([9, 5, 7], seed=1)))
    dynamic = Decoder(model, DynamicCache(config=model.config), input_ids, mask)
    preallocated = Decoder(model, preallocated_cache(model.config, capacity=3), input_ids, mask)
    for step in range(STEPS):
        assert torch.equal(preallocated.logits, dynamic.logits), step
        assert_same_state(dynamic.cache, preallocated.cache)
        tokens = dynamic.logits.argmax(-1)
        dynamic.step(tokens)
        preallocated.step(tokens)


@pytest.mark.parametrize("architecture", ["llama", "mistral", "gemma2"])
@torch.inference_mode()
def test_crop_rolls_back_even_past_the_sliding_window(architecture):
    """After crop(-2), decoding continues exactly as if the last two tokens had never been fed."""
    model = tiny_model(architecture)
    input_ids, mask = left_pad(random_prompts([9, 5, 7], seed=2))
    preallocated = Decoder(model, preallocated_cache(model.config, capacity=64), input_ids, mask)
    fed = []
    for _ in range(STEPS):
        tokens = preallocated.logits.argmax(-1)
        fed.append(tokens)
        preallocated.step(tokens)
    preallocated.crop(2)
    reference = Decoder(model, DynamicCache(config=model.config), input_ids, mask)
    for tokens in fed[:-2]:
        reference.step(tokens)
    replacement = torch.tensor([3, 4, 5])
    preallocated.step(replacement)
    reference.step(replacement)
    assert torch.equal(preallocated.logits, reference.logits)


def test_layer_kinds_follow_the_config():
    kinds = {architecture: [type(layer) for layer in preallocated_cache(tiny_model(architecture).config, 8).layers]
             for architecture in ("llama", "mistral", "gemma2")}
    assert set(kinds["llama"]) == {PreallocatedLayer}
    assert set(kinds["mistral"]) == {PreallocatedSlidingWindowLayer}
    assert kinds["gemma2"][:2] == [PreallocatedSlidingWindowLayer, PreallocatedLayer]
    assert not any(kind in (DynamicLayer, DynamicSlidingWindowLayer) for layers in kinds.values() for kind in layers)


@pytest.mark.parametrize("layer", [PreallocatedLayer(4), PreallocatedSlidingWindowLayer(sliding_window=3, capacity=4)])
def test_rewriting_the_last_position_of_some_rows(layer):
    """What eglr.top_layers relies on: the last position's slot of chosen rows is replaced in place, the other
    rows are untouched, and attention at that position sees what ``update`` showed it, for those rows."""
    shape = (3, 1, 1, 4)
    for position in range(5):
        returned, _ = layer.update(torch.full(shape, float(position)), torch.full(shape, -float(position)))
    rows = torch.tensor([0, 2])
    keys, values = layer.attended_by_last(rows)
    assert torch.equal(keys, returned[rows]) and torch.equal(values, -returned[rows])
    assert torch.equal(layer.attended_by_last(None)[0], returned)
    saved = layer.read_last(rows)
    layer.write_last(rows, torch.full((2, 1, 1, 4), 7.0), torch.full((2, 1, 1, 4), -7.0))
    keys, values = layer.attended_by_last(None)
    assert keys[:, 0, -1, 0].tolist() == [7.0, 4.0, 7.0] and torch.equal(values, -keys)
    assert keys[:, 0, :-1].eq(returned[:, 0, :-1]).all()
    assert layer.get_seq_length() == 5 and layer.keys[1, 0, -1, 0].item() == 4.0
    layer.write_last(rows, *saved)
    assert torch.equal(layer.attended_by_last(None)[0], returned)
    layer.write_last(None, torch.full(shape, 8.0), torch.full(shape, -8.0))
    assert layer.keys[:, 0, -1, 0].tolist() == [8.0] * 3
    following, _ = layer.update(torch.full(shape, 9.0), torch.full(shape, -9.0))
    assert following[0, 0, :, 0].tolist() == ([0.0, 1.0, 2.0, 3.0, 8.0, 9.0] if not layer.is_sliding else [3.0, 8.0, 9.0])


@pytest.mark.parametrize("capacity", [0, -3, 2.5, True])
def test_bad_capacity_is_rejected(capacity):
    with pytest.raises(ValueError, match="capacity"):
        preallocated_cache(tiny_model("llama").config, capacity)


@pytest.mark.parametrize("make_layer", [lambda: PreallocatedLayer(2),
                                        lambda: PreallocatedSlidingWindowLayer(sliding_window=4, capacity=2)])
def test_row_selection_repetition_and_reset_keep_buffers_and_views_consistent(make_layer):
    layer = make_layer()
    keys = torch.arange(3 * 5, dtype=torch.float32).view(3, 1, 5, 1)
    layer.update(keys, -keys)
    visible = keys[:, :, -layer.keys.shape[-2]:]
    layer.batch_select_indices(torch.tensor([2, 0]))
    assert torch.equal(layer.keys, visible[[2, 0]]) and torch.equal(layer.values, -visible[[2, 0]])
    layer.batch_repeat_interleave(2)
    assert torch.equal(layer.keys, visible[[2, 2, 0, 0]])
    new = torch.full((4, 1, 1, 1), 99.0)
    returned_keys, _ = layer.update(new, -new)
    assert returned_keys[:, 0, -1, 0].tolist() == [99.0] * 4
    assert torch.equal(returned_keys[:, :, :-1][:, :, -(layer.keys.shape[-2] - 1):], layer.keys[:, :, :-1])
    layer.reset()
    assert layer.get_seq_length() == 0 and layer.keys is None
    layer.update(new, -new)
    assert layer.get_seq_length() == 1 and torch.equal(layer.keys, new)
