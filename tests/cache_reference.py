"""Cache-free references for re-applying the top layers, and the engine's machinery driven by hand.

The reference for "the top L layers applied again to h at position t" is a plain
forward of those layers over the whole sequence, without any cache, in which the
layer input at position t is replaced by h: causal attention leaves positions
< t as they were, and position t then attends to exactly what the cached
re-application attends to. Masks and rotary embeddings for the reference come
from the model's own cache-free forward, on a model that carries none of the
engine's hooks: a copy, or the same model after :meth:`CachedRun.close`.
Shared by the tiny-model tests (tests/test_engine_cache.py) and the real-model
ones (tests/test_real_models.py).
"""
from __future__ import annotations

import torch

from eglr.cache import preallocated_cache
from eglr.logits import decoder_layers
from eglr.top_layers import TopLayers
from tiny_models import positions

LAYER_SPAN = 2
# A small capacity makes the engine's cache grow its buffers during the runs.
CACHE_CAPACITY = 4


def top_layers_reference(reference_model, input_ids, attention_mask, replacements: dict[int, torch.Tensor],
                         layer_span: int = LAYER_SPAN) -> torch.Tensor:
    """Outputs of the top ``layer_span`` layers over the whole sequence, cache-free, after
    replacing their input at each position in ``replacements`` ([batch, dim] each)."""
    top = list(decoder_layers(reference_model))[-layer_span:]
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

    def __init__(self, model, input_ids, attention_mask, layer_span: int = LAYER_SPAN):
        self.model = model
        self.mask = attention_mask
        self.cache = preallocated_cache(model.config, capacity=CACHE_CAPACITY)
        self.top = TopLayers(model, self.cache, layer_span).__enter__()
        prompt_positions = positions(attention_mask)
        model(input_ids=input_ids[:, :-1], attention_mask=attention_mask[:, :-1], position_ids=prompt_positions[:, :-1],
              cache=self.cache, use_cache=True)
        self.top.end_step()
        self.position = prompt_positions[:, -1:]
        self.logits = self._forward(input_ids[:, -1:])

    def _forward(self, tokens):
        output = self.model(input_ids=tokens, attention_mask=self.mask, position_ids=self.position,
                            cache=self.cache, use_cache=True, logits_to_keep=1)
        return output.logits[:, -1]

    def next_token(self, tokens):
        self.top.end_step()
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        self.position = self.position + 1
        self.logits = self._forward(tokens[:, None])

    def close(self) -> None:
        """Remove the hooks, so that the model can serve as its own cache-free reference."""
        self.top.__exit__(None, None, None)


def block_input_reference(reference_model, input_ids, attention_mask, layer_span: int = LAYER_SPAN) -> torch.Tensor:
    """The input of the first of the top ``layer_span`` layers at every position, cache-free."""
    first_top = list(decoder_layers(reference_model))[-layer_span]
    inputs = []
    handle = first_top.register_forward_pre_hook(lambda module, args, kwargs: inputs.append(args[0] if args else
                                                                                          kwargs["hidden_states"]),
                                                 with_kwargs=True)
    try:
        reference_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions(attention_mask),
                        use_cache=False)
    finally:
        handle.remove()
    return inputs[0]
