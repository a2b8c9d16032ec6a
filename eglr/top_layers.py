"""Run a model's top decoder layers again, on chosen rows, at the current position.

During each normal forward pass, forward pre-hooks on the top-L decoder layers
record the exact arguments each layer was called with (rotary position
embeddings, that layer's attention mask, position ids, the cache object, ...),
and a forward hook on the last decoder layer keeps its output at the last
position: the pre-norm hidden state ``h``. The first top layer's input at that
position is kept too (the ``norm_matched`` re-injection rescales to its norm).

:meth:`TopLayers.reapply` then calls the top layers again with a new hidden
state for some rows only. Every recorded argument with a batch dimension is
sliced to those rows, and the layers get, in place of the cache, a view of it
restricted to those rows (:class:`_RowsOfCache`): when a layer's attention
writes this position's keys/values, they replace that slot of those rows in
place, and attention reads those rows' keys/values as the first pass saw them
plus the new ones. Rows that are not re-applied are not touched at all: no
compute, no copy of their cache. Nothing is recomputed per re-application:
masks and rotary embeddings are the recorded ones.

Which keys/values a position keeps after its re-applications (the KV policy) is
decided by the caller, :func:`eglr.step.eglr_step`: re-applied rows' slots hold
the last re-application's keys/values unless :meth:`keep_first_pass` /
:meth:`restore_first_pass` put the first pass's back.

This needs the engine's own cache layers (:mod:`eglr.cache`), whose buffers can
be written at a position in place, and query length 1 (one new position per
row), which is why the engine runs the last prompt token as a decoding step of
its own.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import Cache, PreTrainedModel

from eglr.cache import PreallocatedLayer, PreallocatedSlidingWindowLayer
from eglr.logits import decoder_layers

_IN_PLACE_LAYERS = (PreallocatedLayer, PreallocatedSlidingWindowLayer)


def _cache_index(layer: nn.Module, position: int) -> int:
    attention = getattr(layer, "self_attn", None)
    return getattr(attention, "layer_idx", position)


def _layer_output(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _select_rows(value: Any, rows: torch.Tensor, batch_size: int) -> Any:
    """``value`` with every tensor that has a batch dimension cut to ``rows`` (containers recursively)."""
    if isinstance(value, torch.Tensor):
        return value.index_select(0, rows) if value.dim() and value.shape[0] == batch_size else value
    if isinstance(value, (tuple, list)):
        return type(value)(_select_rows(item, rows, batch_size) for item in value)
    if isinstance(value, dict):
        return {name: _select_rows(item, rows, batch_size) for name, item in value.items()}
    return value


class _RowsOfCache:
    """The cache as the attention of a re-application on ``rows`` sees it.

    ``update`` (the one call attention makes) writes the new keys/values into
    the current position's slot of those rows and returns those rows'
    keys/values over the positions the current one attends to.
    """

    def __init__(self, cache: Cache, rows: torch.Tensor | None) -> None:
        self.cache = cache
        self.rows = rows

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        layer = self.cache.layers[layer_idx]
        layer.write_last(self.rows, key_states, value_states)
        return layer.attended_by_last(self.rows)


class TopLayers:
    """Hooks that let the top ``layer_span`` decoder layers be re-applied at the current position.

    Use as a context manager around a decoding loop that passes ``cache`` (an
    :func:`eglr.cache.preallocated_cache`) to the model: after each forward,
    :attr:`hidden` is the last layer's output at the last position,
    :meth:`reapply` runs the top layers again on new hidden states of some rows,
    and :meth:`end_step` must be called before the next forward.
    """

    def __init__(self, model: PreTrainedModel, cache: Cache, layer_span: int) -> None:
        layers = decoder_layers(model)
        if not 0 < layer_span <= len(layers):
            raise ValueError(f"layer_span must be in 1..{len(layers)} for this model, got {layer_span}")
        first = len(layers) - layer_span
        self.top_layers = list(layers[first:])
        self.cache_indices = [_cache_index(layer, first + offset) for offset, layer in enumerate(self.top_layers)]
        for index in self.cache_indices:
            if not isinstance(cache.layers[index], _IN_PLACE_LAYERS):
                raise ValueError(f"re-applying layers needs eglr.cache layers; cache layer {index} is "
                                 f"{type(cache.layers[index]).__name__} (build the cache with eglr.cache.preallocated_cache)")
        self.last_layer = layers[-1]
        self.cache = cache
        self.hidden: torch.Tensor | None = None
        self.block_input: torch.Tensor | None = None
        self._calls: list[tuple[tuple, dict] | None] = [None] * layer_span
        self._batch_size = 0
        self._query_length = 0
        self._first_pass: tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]] | None = None
        self._capturing = True
        self._handles: list[Any] = []

    def __enter__(self) -> TopLayers:
        for position, layer in enumerate(self.top_layers):
            self._handles.append(layer.register_forward_pre_hook(self._make_pre_hook(position), with_kwargs=True))
        self._handles.append(self.last_layer.register_forward_hook(self._keep_hidden))
        return self

    def __exit__(self, *exc_info: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.end_step()
        self.hidden = None

    def _make_pre_hook(self, position: int):
        def record_call(module: nn.Module, args: tuple, kwargs: dict) -> None:
            if not self._capturing:
                return
            self._calls[position] = (args, kwargs)
            if position == 0:
                hidden = args[0] if args else kwargs["hidden_states"]
                self._batch_size, self._query_length = hidden.shape[0], hidden.shape[1]
                self.block_input = hidden[:, -1:]

        return record_call

    def _keep_hidden(self, module: nn.Module, args: tuple, output: Any) -> None:
        if self._capturing:
            self.hidden = _layer_output(output)[:, -1:]

    def _cache_layers(self) -> list[Any]:
        return [self.cache.layers[index] for index in self.cache_indices]

    def reapply(self, hidden: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Run the top layers again on ``hidden`` [len(rows), 1, dim] for ``rows`` (None: every row).

        Returns those rows' new last-layer output (pre-norm). Afterwards the
        cache holds this re-application's keys/values at the current position
        for those rows; every other row is left exactly as it was.
        """
        if any(call is None for call in self._calls):
            raise RuntimeError("reapply() needs a forward pass of the model since the last end_step()")
        if hidden.shape[1] != 1 or self._query_length != 1:
            raise RuntimeError("reapply() works on one new position per row (a forward with query length 1)")
        view = _RowsOfCache(self.cache, rows)
        self._capturing = False
        try:
            for layer, (args, kwargs) in zip(self.top_layers, self._calls):
                if rows is not None:
                    args, kwargs = _select_rows((args, kwargs), rows, self._batch_size)
                kwargs = {name: view if value is self.cache else value for name, value in kwargs.items()}
                if args:
                    hidden = _layer_output(layer(hidden, *args[1:], **kwargs))
                else:
                    hidden = _layer_output(layer(**{**kwargs, "hidden_states": hidden}))
        finally:
            self._capturing = True
        return hidden

    def keep_first_pass(self, rows: torch.Tensor) -> None:
        """Copy aside the current position's keys/values of ``rows``, as the normal pass wrote them."""
        self._first_pass = (rows, [layer.read_last(rows) for layer in self._cache_layers()])

    def restore_first_pass(self) -> None:
        """Put back what :meth:`keep_first_pass` copied aside."""
        if self._first_pass is None:
            return
        rows, saved = self._first_pass
        for layer, (keys, values) in zip(self._cache_layers(), saved):
            layer.write_last(rows, keys, values)
        self._first_pass = None

    def end_step(self) -> None:
        """Finish the current position: drop the recorded calls (the next forward records new ones)."""
        self._first_pass = None
        self._calls = [None] * len(self._calls)
