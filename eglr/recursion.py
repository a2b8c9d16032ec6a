"""Re-apply a model's top decoder layers to a new hidden state at the current position.

During each normal forward pass, forward pre-hooks on the top-L decoder layers
record the exact arguments each layer was called with (rotary position
embeddings, that layer's attention mask, position ids, the cache object, ...)
and a shallow snapshot of that layer's KV-cache entry *before* the layer wrote
the current position into it. A forward hook on the last decoder layer keeps its
output at the last position: the pre-norm hidden state ``h``.

:meth:`TopLayerRecursion.reapply` then puts each top layer's cache entry back
to its snapshot and calls the layer again with the recorded arguments and a new
hidden state. Restoring the snapshot rolls the layer's cache back to before it
wrote the current position (its length and views for the engine's in-place
cache, see :mod:`eglr.cache`; the previous tensors for transformers' own dynamic
layers, which concatenate into new ones), so the re-applied layer writes this
position's keys/values into the same slot: they are *replaced*, never appended a
second time, for full and sliding-window layers alike. Where earlier values must
survive (``keep_first``, and rows that sit an iteration out) only that one
position is copied aside and written back. Nothing is recomputed per iteration:
masks and rotary embeddings are the recorded ones.

This is only valid for query length 1 (one new position per row), which is why
the engine runs the last prompt token as a decoding step of its own.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import Cache, PreTrainedModel

from eglr.logits import decoder_layers

KV_POLICIES = ("overwrite", "keep_first")


def _cache_index(layer: nn.Module, position: int) -> int:
    attention = getattr(layer, "self_attn", None)
    return getattr(attention, "layer_idx", position)


def _snapshot(cache_layer: Any) -> dict[str, Any]:
    """References to a cache layer's state (tensors are shared, not copied)."""
    return dict(vars(cache_layer))


def _position_entries(cache_layers: list[Any]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Copies of the current (last) position's keys and values in each cache layer."""
    return [(layer.keys[:, :, -1:].clone(), layer.values[:, :, -1:].clone()) for layer in cache_layers]


def _layer_output(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


class TopLayerRecursion:
    """Hooks that let the top ``layer_span`` decoder layers be re-applied at the current position.

    Use as a context manager around a decoding loop that passes ``cache`` to the
    model: after each forward, :attr:`hidden` is the last layer's output at the
    last position, :meth:`reapply` runs the top layers again on a new hidden
    state, and :meth:`end_step` must be called before the next forward.

    ``kv_policy="overwrite"`` leaves the keys/values of the last iterate in the
    cache for this position; ``"keep_first"`` puts the first pass's back in
    :meth:`end_step`, so the re-applications only change this step's token.
    """

    def __init__(self, model: PreTrainedModel, cache: Cache, layer_span: int, kv_policy: str = "overwrite") -> None:
        layers = decoder_layers(model)
        if not 0 < layer_span <= len(layers):
            raise ValueError(f"layer_span must be in 1..{len(layers)} for this model, got {layer_span}")
        if kv_policy not in KV_POLICIES:
            raise ValueError(f"kv_policy must be one of {KV_POLICIES}, got {kv_policy!r}")
        first = len(layers) - layer_span
        self.top_layers = list(layers[first:])
        self.cache_indices = [_cache_index(layer, first + offset) for offset, layer in enumerate(self.top_layers)]
        self.last_layer = layers[-1]
        self.cache = cache
        self.kv_policy = kv_policy
        self.hidden: torch.Tensor | None = None
        self._calls: list[tuple[tuple, dict] | None] = [None] * layer_span
        self._before: list[dict[str, Any] | None] = [None] * layer_span
        self._first_pass: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._query_length = 0
        self._capturing = True
        self._handles: list[Any] = []

    def __enter__(self) -> TopLayerRecursion:
        for position, layer in enumerate(self.top_layers):
            self._handles.append(
                layer.register_forward_pre_hook(self._make_pre_hook(position), with_kwargs=True)
            )
        self._handles.append(self.last_layer.register_forward_hook(self._keep_hidden))
        return self

    def __exit__(self, *exc_info: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.end_step()
        self.hidden = None

    def _make_pre_hook(self, position: int):
        cache_index = self.cache_indices[position]

        def record_call(module: nn.Module, args: tuple, kwargs: dict) -> None:
            if self._capturing:
                self._calls[position] = (args, kwargs)
                self._before[position] = _snapshot(self.cache.layers[cache_index])
                if position == 0:
                    hidden = args[0] if args else kwargs["hidden_states"]
                    self._query_length = hidden.shape[1]

        return record_call

    def _keep_hidden(self, module: nn.Module, args: tuple, output: Any) -> None:
        if self._capturing:
            self.hidden = _layer_output(output)[:, -1:]

    def _cache_layers(self) -> list[Any]:
        return [self.cache.layers[index] for index in self.cache_indices]

    def reapply(self, hidden: torch.Tensor, keep_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Run the top layers again on ``hidden`` [batch, 1, dim] at the current position.

        Returns the new last-layer output (pre-norm). Afterwards the cache holds
        this iterate's keys/values for the current position, except for rows
        where ``keep_rows`` is True: they keep the keys/values they had before
        this call (their outputs should be discarded by the caller).
        """
        if any(call is None for call in self._calls):
            raise RuntimeError("reapply() needs a forward pass of the model since the last end_step()")
        if hidden.shape[1] != 1 or self._query_length != 1:
            raise RuntimeError("reapply() works on one new position per row (a forward with query length 1)")
        cache_layers = self._cache_layers()
        current = _position_entries(cache_layers) if keep_rows is not None else None
        if self._first_pass is None and self.kv_policy == "keep_first":
            self._first_pass = _position_entries(cache_layers)
        self._capturing = False
        try:
            for layer, cache_layer, (args, kwargs), before in zip(
                self.top_layers, cache_layers, self._calls, self._before
            ):
                vars(cache_layer).update(before)
                if args:
                    hidden = _layer_output(layer(hidden, *args[1:], **kwargs))
                else:
                    hidden = _layer_output(layer(**{**kwargs, "hidden_states": hidden}))
        finally:
            self._capturing = True
        if current is not None:
            self._restore_rows(cache_layers, current, keep_rows)
        return hidden

    @staticmethod
    def _restore_rows(
        cache_layers: list[Any], previous: list[tuple[torch.Tensor, torch.Tensor]], keep_rows: torch.Tensor
    ) -> None:
        """Write back the current position's keys/values of ``keep_rows`` (in place, one position)."""
        keep = keep_rows.view(-1, 1, 1, 1)
        for cache_layer, (old_keys, old_values) in zip(cache_layers, previous):
            cache_layer.keys[:, :, -1:] = torch.where(keep, old_keys, cache_layer.keys[:, :, -1:])
            cache_layer.values[:, :, -1:] = torch.where(keep, old_values, cache_layer.values[:, :, -1:])

    def end_step(self) -> None:
        """Finish the current position: apply the KV policy and drop the recorded references."""
        if self._first_pass is not None:
            for cache_layer, (first_keys, first_values) in zip(self._cache_layers(), self._first_pass):
                cache_layer.keys[:, :, -1:] = first_keys
                cache_layer.values[:, :, -1:] = first_values
        self._first_pass = None
        self._calls = [None] * len(self._calls)
        self._before = [None] * len(self._before)
