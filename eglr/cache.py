"""A KV cache that writes each new position in place instead of concatenating.

transformers' ``DynamicCache`` grows every layer's keys and values with
``torch.cat`` at every decoding step, i.e. it copies the whole cache once per
token per layer. At batch 8 and a few hundred positions that copy costs as much
as a large share of the step's matrix products on a CPU. The layers here
allocate room for ``capacity`` positions on their first write, copy each new
position into the next free slots and hand attention a view of the filled part.
The views hold exactly the values ``DynamicCache`` would have concatenated, in
the same shapes, so attention computes the same numbers; only the copy is gone.

Full-attention and sliding-window layers are both covered (a sliding layer keeps
every position and shows attention the last ``sliding_window - 1`` plus the new
ones, as transformers' sliding layer does). Layers of any other kind (linear
attention, quantised, ...) are left as the model's config made them.

EGLR's re-applications write the current position again, for some rows:
:meth:`~_InPlaceBuffers.write_last` replaces the last written position's
keys/values of chosen rows in place, :meth:`~_InPlaceBuffers.attended_by_last`
returns what attention at that position sees for those rows, and
:meth:`~_InPlaceBuffers.read_last` copies that position aside (``keep_first``).
"""
from __future__ import annotations

import torch
from transformers import DynamicCache, PretrainedConfig
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer


def _allocate(like: torch.Tensor, capacity: int) -> torch.Tensor:
    """Uninitialised [batch, heads, capacity, head_dim] storage shaped after ``like``."""
    batch, heads, _, head_dim = like.shape
    return like.new_empty((batch, heads, capacity, head_dim))


class _InPlaceBuffers:
    """Key/value buffers with room for ``capacity`` positions, doubled when a write needs more."""

    def _init_buffers(self, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")
        self.capacity = capacity
        self.key_buffer: torch.Tensor | None = None
        self.value_buffer: torch.Tensor | None = None

    def _write(self, key_states: torch.Tensor, value_states: torch.Tensor, start: int) -> int:
        """Copy new keys/values into the buffers at ``start``; return the new filled length."""
        end = start + key_states.shape[-2]
        if self.key_buffer is None:
            self.device = key_states.device
            self.key_buffer = _allocate(key_states, max(self.capacity, end))
            self.value_buffer = _allocate(value_states, max(self.capacity, end))
        elif end > self.key_buffer.shape[-2]:
            capacity = max(2 * self.key_buffer.shape[-2], end)
            for name in ("key_buffer", "value_buffer"):
                old = getattr(self, name)
                new = _allocate(old, capacity)
                new[:, :, :start] = old[:, :, :start]
                setattr(self, name, new)
        self.key_buffer[:, :, start:end] = key_states
        self.value_buffer[:, :, start:end] = value_states
        return end

    def _show(self, start: int, end: int) -> None:
        """Point ``keys``/``values`` (what the cache reports as held) at positions start..end-1."""
        self.keys = self.key_buffer[:, :, start:end]
        self.values = self.value_buffer[:, :, start:end]

    def _visible(self) -> tuple[int, int]:
        """The positions the cache currently reports as held (``keys``/``values``)."""
        raise NotImplementedError

    def _refresh_view(self) -> None:
        self._show(*self._visible())

    def _last_query_span(self) -> tuple[int, int]:
        """The positions attention at the last written position attends to (that position included)."""
        raise NotImplementedError

    def attended_by_last(self, rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys/values that attention at the last written position sees, for ``rows`` (None: all rows).

        All rows give views of the buffers; a subset gives copies of those rows.
        """
        start, end = self._last_query_span()
        keys, values = self.key_buffer[:, :, start:end], self.value_buffer[:, :, start:end]
        if rows is None:
            return keys, values
        return keys.index_select(0, rows), values.index_select(0, rows)

    def read_last(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of the last written position's keys/values of ``rows``."""
        position = self._last_query_span()[1] - 1
        return (self.key_buffer[:, :, position].index_select(0, rows),
                self.value_buffer[:, :, position].index_select(0, rows))

    def write_last(self, rows: torch.Tensor | None, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Replace the last written position's keys/values of ``rows`` (None: all rows) in place.

        ``keys``/``values`` are [rows, heads, head_dim] or [rows, heads, 1, head_dim].
        """
        position = self._last_query_span()[1] - 1
        keys, values = keys.reshape(keys.shape[0], keys.shape[1], -1), values.reshape(values.shape[0], values.shape[1], -1)
        if rows is None:
            self.key_buffer[:, :, position] = keys
            self.value_buffer[:, :, position] = values
        else:
            self.key_buffer[:, :, position].index_copy_(0, rows, keys)
            self.value_buffer[:, :, position].index_copy_(0, rows, values)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.key_buffer is not None:
            self.key_buffer = self.key_buffer[indices].contiguous()
            self.value_buffer = self.value_buffer[indices].contiguous()
            self._refresh_view()

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.key_buffer is not None:
            self.key_buffer = self.key_buffer.repeat_interleave(repeats, dim=0)
            self.value_buffer = self.value_buffer.repeat_interleave(repeats, dim=0)
            self._refresh_view()

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx.to(self.device))

    def _drop_buffers(self) -> None:
        self.key_buffer = self.value_buffer = self.keys = self.values = None
        self.is_initialized = False


def _check_crop(tokens_to_remove: int) -> None:
    if tokens_to_remove > 0:
        raise ValueError(f"crop takes a negative number of tokens to remove, got {tokens_to_remove}")


class PreallocatedLayer(_InPlaceBuffers, DynamicLayer):
    """A full-attention cache layer with in-place writes into a preallocated buffer."""

    def __init__(self, capacity: int, **kwargs: object) -> None:
        super().__init__()
        self._init_buffers(capacity)
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.length = self._write(key_states, value_states, self.length)
        self._refresh_view()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def crop(self, tokens_to_remove: int) -> None:
        _check_crop(tokens_to_remove)
        if tokens_to_remove < 0 and self.key_buffer is not None:
            self.length = max(0, self.length + tokens_to_remove)
            self._refresh_view()

    def reset(self) -> None:
        self._drop_buffers()
        self.length = 0

    def _visible(self) -> tuple[int, int]:
        return 0, self.length

    def _last_query_span(self) -> tuple[int, int]:
        return 0, self.length


class PreallocatedSlidingWindowLayer(_InPlaceBuffers, DynamicSlidingWindowLayer):
    """A sliding-window cache layer with in-place writes; attention sees what transformers' layer shows it.

    Every position is kept (so the layer can always be cropped back); the
    visible part is the last ``sliding_window - 1`` positions before a write and
    those plus the new positions in the states ``update`` returns.
    """

    def __init__(self, sliding_window: int, capacity: int, **kwargs: object) -> None:
        super().__init__(sliding_window=sliding_window)
        self._init_buffers(capacity)

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self._sliding_window_tensor = self._sliding_window_tensor.to(key_states.device)
        self.is_initialized = True

    def _kept_start(self, end: int) -> int:
        return max(0, end - (self.sliding_window - 1))

    def _visible(self) -> tuple[int, int]:
        return self._kept_start(self.cumulative_length), self.cumulative_length

    def _last_query_span(self) -> tuple[int, int]:
        return self._kept_start(self.cumulative_length - 1), self.cumulative_length

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        visible_start = self._kept_start(self.cumulative_length)
        end = self._write(key_states, value_states, self.cumulative_length)
        self.cumulative_length = end
        full_keys = self.key_buffer[:, :, visible_start:end]
        full_values = self.value_buffer[:, :, visible_start:end]
        self._refresh_view()
        return full_keys, full_values

    def crop(self, tokens_to_remove: int) -> None:
        _check_crop(tokens_to_remove)
        if tokens_to_remove < 0 and self.key_buffer is not None:
            self.cumulative_length = max(0, self.cumulative_length + tokens_to_remove)
            self._refresh_view()

    def reset(self) -> None:
        self._drop_buffers()
        self.cumulative_length = 0


def preallocated_cache(config: PretrainedConfig, capacity: int) -> DynamicCache:
    """A ``DynamicCache`` for ``config`` whose attention layers write in place into room for ``capacity`` positions.

    ``capacity`` is a hint (prompt length + new tokens); a layer that needs more
    doubles its buffers. Layer kinds other than transformers' plain full and
    sliding-window layers are kept as they are.
    """
    cache = DynamicCache(config=config)
    for index, layer in enumerate(cache.layers):
        if type(layer) is DynamicLayer:
            cache.layers[index] = PreallocatedLayer(capacity)
        elif type(layer) is DynamicSlidingWindowLayer:
            cache.layers[index] = PreallocatedSlidingWindowLayer(layer.sliding_window, capacity)
    return cache
