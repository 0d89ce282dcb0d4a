"""A transformers ``Cache`` whose past is chosen by the memory, not accumulated by the model.

transformers 5.x builds the causal mask from ``cache.get_seq_length()`` before the first layer
runs, and each attention layer calls ``cache.update(keys, values, layer_idx)`` after computing its
own query, key and value projections. :class:`ContextLayer` uses exactly these two extension points:

* its past (attention sinks plus frames) is given at construction, already rotated to the positions
  the memory assigned, or *resolved lazily* on the first ``update`` of a forward pass. Lazily is how
  ReKV's internal retrieval works: layer ``l`` picks its frames from the question's layer-``l``
  queries, which only exist once layers ``< l`` have attended to *their* retrieved frames. The length
  of a lazy past is known in advance (``k`` blocks of ``T`` tokens), so the mask is right.
* with ``keep_new=False`` the tokens of the forward pass attend to the past but are not cached (the
  retrieval pass of ReKV: the raw question selects frames, then the answer prompt is prefilled on
  the sinks and the frames alone).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from transformers.cache_utils import Cache, DynamicLayer

#: Returns this layer's past keys (already rotated) and values, each ``(1, Hkv, P, D)``.
PastFetcher = Callable[[], tuple[torch.Tensor, torch.Tensor]]


class ContextLayer(DynamicLayer):
    """One decoder layer's cache: a chosen past, then (optionally) the tokens that follow it.

    Args:
        keys: ``(1, Hkv, P0, D)`` rotated keys of the fixed part of the past, or None.
        values: ``(1, Hkv, P0, D)``, or None.
        fetch: called once, on this layer's first ``update``, for the rest of the past
            (``pending_length`` tokens) appended after ``keys``; None when the past is complete.
        pending_length: tokens ``fetch`` will return.
        keep_new: cache the tokens of later forward passes (False for a retrieval pass).
    """

    def __init__(
        self,
        keys: torch.Tensor | None = None,
        values: torch.Tensor | None = None,
        *,
        fetch: PastFetcher | None = None,
        pending_length: int = 0,
        keep_new: bool = True,
    ) -> None:
        super().__init__()
        if keys is not None:
            self.lazy_initialization(keys, values)
            self.keys, self.values = keys, values
        self.fetch = fetch
        self.pending_length = pending_length if fetch is not None else 0
        self.keep_new = keep_new

    def _resolve(self) -> None:
        if self.fetch is None:
            return
        keys, values = self.fetch()
        if keys.shape[-2] != self.pending_length:
            raise RuntimeError(f"fetched {keys.shape[-2]} tokens of past, expected {self.pending_length}")
        if not self.is_initialized:
            self.lazy_initialization(keys, values)
            self.keys, self.values = keys, values
        else:
            self.keys = torch.cat([self.keys, keys], dim=-2)
            self.values = torch.cat([self.values, values], dim=-2)
        self.fetch, self.pending_length = None, 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        self._resolve()
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        keys = torch.cat([self.keys, key_states], dim=-2)
        values = torch.cat([self.values, value_states], dim=-2)
        if self.keep_new:
            self.keys, self.values = keys, values
        return keys, values

    def get_seq_length(self) -> int:
        held = 0 if not self.is_initialized or self.keys.numel() == 0 else self.keys.shape[-2]
        return held + self.pending_length


def context_cache(
    past: Sequence[tuple[torch.Tensor, torch.Tensor] | None],
    *,
    fetchers: Sequence[PastFetcher] | None = None,
    pending_length: int = 0,
    keep_new: bool = True,
) -> Cache:
    """A cache holding, for each layer, the given past plus an optional lazily fetched part.

    Args:
        past: per layer ``(keys, values)`` each ``(1, Hkv, P0, D)`` with rotated keys, or None for an
            empty fixed part. All layers must hold the same number of tokens.
        fetchers: per layer, a :data:`PastFetcher` for ``pending_length`` more tokens.
        pending_length: tokens each fetcher returns.
        keep_new: whether tokens of later forward passes are appended (see :class:`ContextLayer`).
    """
    layers = []
    for i, kv in enumerate(past):
        keys, values = kv if kv is not None else (None, None)
        fetch = fetchers[i] if fetchers is not None else None
        layers.append(ContextLayer(keys, values, fetch=fetch, pending_length=pending_length, keep_new=keep_new))
    return Cache(layers=layers)


def keep_new_tokens(cache: Cache) -> None:
    """Switch every layer of a :func:`context_cache` to caching the tokens that follow."""
    for layer in cache.layers:
        if isinstance(layer, ContextLayer):
            layer.keep_new = True
