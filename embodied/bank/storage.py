"""Batched episodic storage of one stream: B banks updated together, no Python loop over slots.

Bytes apart from bookkeeping (as vLLM's block pool): an entry's tokens are written once into a
physical slot of ``feats (B, S, N, D)`` and never moved; ``order (B, S)`` lists each row's physical
slots oldest first, the first ``lengths[b]`` holding entries and the rest free. A merge or a FIFO drop
rewrites a few int64s of ``order`` and at most one slot of ``feats``, and the token-merge similarity
of each adjacent pair is cached (``pair_sim``) and refreshed only for the pairs a step changes, so an
update costs O(B N D + B L) (three entry-pair similarities per row, int64 bookkeeping), never a pass
over the whole bank. Retrieval reads the slots in physical order; attention is invariant to key
order (timesteps travel with the keys as the PE), up to float summation order.

Consolidation reproduces MemoryVLA's ``_memory_consolidate`` (``reference.ReferenceBank`` is the
plain, one-episode version the tests compare against): append, then while a bank holds more than
``capacity`` entries, ``"tome"`` replaces the most similar adjacent pair ``(i, i+1)`` (first one on
ties) by ``0.5 * (f_i + f_{i+1})`` and ``"fifo"`` drops the oldest. One append can exceed the capacity
by one entry only, so one merge per step suffices.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F

from .config import MemoryBankConfig
from .types import BankInputError

STATE_KEYS = ("feats", "timesteps", "lengths", "order", "pair_sim")
Method = TypeVar("Method", bound=Callable)


def outside_autograd(method: Method) -> Method:
    """Run ``method`` without autograd and outside ``torch.inference_mode``: bank tensors made in an
    inference-mode rollout would otherwise be inference tensors that a later ordinary step may not
    update in place (PyTorch refuses it), e.g. evaluation under ``inference_mode`` between training steps."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with torch.inference_mode(False), torch.no_grad():
            return method(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def pair_similarity(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """MemoryVLA's merge score of two entries ``(..., N, D)``: per-token cosine similarity, mean over
    tokens -> float32 ``(...)``."""
    return F.cosine_similarity(first, second, dim=-1).mean(dim=-1).float()


class BankStorage:
    """One stream's entries for ``batch_size`` episodes, held without autograd.

    Args:
        batch_size: B, the number of slots (one episode each).
        num_tokens: N, tokens per entry.
        dim: D, channels per token.
        config: capacity, consolidation and timestep-merge rule.
        device: where the tensors live.
        dtype: the stored tokens' floating dtype.
        differentiable: keep the autograd history of the stored tokens (training by backpropagation
            through the bank: a loss at step t reaches the encoder at the step that wrote an entry).
            ``feats`` is then replaced, never written in place, at every append, merge and reset.
            Bookkeeping (order, lengths, merge scores) never carries gradients.
    """

    @outside_autograd
    def __init__(self, batch_size: int, num_tokens: int, dim: int, config: MemoryBankConfig,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 differentiable: bool = False) -> None:
        self.config = config
        self.differentiable = differentiable
        self.num_tokens, self.dim = num_tokens, dim
        slots = config.capacity + 1 if config.consolidation != "none" else min(config.capacity, config.max_entries)
        self.feats = torch.zeros(batch_size, slots, num_tokens, dim, device=device, dtype=dtype)
        self.timesteps = torch.zeros(batch_size, slots, device=device)
        self.lengths = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.order = torch.arange(slots, device=device).repeat(batch_size, 1)
        self.pair_sim = torch.zeros(batch_size, slots - 1, device=device)
        self.used_slots = 0  # upper bound on the physical slots any row uses (host-side: no sync)
        self._projections: tuple | None = None  # (weights version, [(keys, values) (B, S, N, D) per block])
        self._written: list[torch.Tensor] | None = []  # (B,) slots written since the projections were made

    @property
    def batch_size(self) -> int:
        return self.feats.shape[0]

    @property
    def slots(self) -> int:
        return self.feats.shape[1]

    @property
    def device(self) -> torch.device:
        return self.feats.device

    @outside_autograd
    def to(self, device: torch.device | str) -> BankStorage:
        """Move every tensor to ``device`` (in place); returns self."""
        if torch.device(device) != self.device:
            for key in STATE_KEYS:
                setattr(self, key, getattr(self, key).to(device))
            self._projections = None
        return self

    @outside_autograd
    def reset(self, rows: torch.Tensor) -> None:
        """Empty the banks of ``rows`` (int64 indices); other rows are untouched."""
        rows = rows.to(self.device)
        if self.differentiable:
            with torch.enable_grad():
                self.feats = self.feats.index_fill(0, rows, 0.0)
        else:
            self.feats[rows] = 0
        self.timesteps[rows] = 0
        self.lengths[rows] = 0
        self.order[rows] = torch.arange(self.slots, device=self.device)
        self.pair_sim[rows] = 0

    def view(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The slots in use, physical order: ``feats (B, S', N, D)``, ``timesteps (B, S')``,
        ``valid`` bool ``(B, S')`` (False for free slots), with ``S' <= slots``."""
        used = self.used_slots
        rank = torch.arange(self.slots, device=self.device).expand_as(self.order)
        valid = torch.zeros_like(self.order, dtype=torch.bool).scatter_(1, self.order, rank < self.lengths[:, None])
        return self.feats[:, :used], self.timesteps[:, :used], valid[:, :used]

    @outside_autograd
    def append(self, tokens: torch.Tensor, timestep: torch.Tensor, active: torch.Tensor) -> None:
        """Store ``tokens (B, N, D)`` taken at ``timestep (B,)`` in the rows where ``active (B,)`` is
        True, then consolidate every row that went over capacity."""
        if self.config.consolidation == "none":
            self._make_room(active)
        rows = torch.arange(self.batch_size, device=self.device)
        slot = self.order.gather(1, self.lengths.clamp(max=self.slots - 1)[:, None])[:, 0]  # free where active
        keep = active[:, None, None]
        tokens = tokens if self.differentiable else tokens.detach()
        self._write_feats(rows, slot, lambda: torch.where(keep, tokens.to(self.feats.dtype), self.feats[rows, slot]))
        self.timesteps[rows, slot] = torch.where(active, timestep.detach().float(), self.timesteps[rows, slot])
        self._log_write(slot)
        if self.config.consolidation == "tome":
            self._score_new_pair(rows, slot, active)
        self.lengths += active.long()
        self.used_slots = min(self.used_slots + 1, self.slots)
        if self.config.consolidation == "tome":
            self._merge_most_similar(rows)
        elif self.config.consolidation == "fifo":
            self._drop_oldest()

    def _write_feats(self, rows: torch.Tensor, slot: torch.Tensor, values: Callable[[], torch.Tensor]) -> None:
        """``feats[rows, slot] = values()``: in place, or (``differentiable``) as a new tensor that keeps
        the autograd history of ``values()`` and of the entries already stored."""
        if not self.differentiable:
            self.feats[rows, slot] = values()
            return
        with torch.enable_grad():
            self.feats = self.feats.index_put((rows, slot), values())

    def _score_new_pair(self, rows: torch.Tensor, slot: torch.Tensor, active: torch.Tensor) -> None:
        """Cache the similarity of the new entry with its predecessor (pair ``lengths - 1``)."""
        previous = (self.lengths - 1).clamp(min=0)
        score = pair_similarity(self._feat_at(rows, previous), self.feats[rows, slot])
        has_previous = active & (self.lengths > 0)
        old = self.pair_sim.gather(1, previous[:, None])[:, 0]
        self.pair_sim.scatter_(1, previous[:, None], torch.where(has_previous, score, old)[:, None])

    def _merge_most_similar(self, rows: torch.Tensor) -> None:
        capacity, slots = self.config.capacity, self.slots
        over = self.lengths > capacity
        pair = torch.arange(slots - 1, device=self.device)
        scores = self.pair_sim.masked_fill(pair >= (self.lengths - 1)[:, None], float("-inf"))
        first = scores.argmax(dim=1)  # (B,): merge entries first, first + 1
        slot_i = self.order.gather(1, first[:, None])[:, 0]
        slot_j = self.order.gather(1, (first + 1).clamp(max=slots - 1)[:, None])[:, 0]  # clamped: unused rows

        def merged() -> torch.Tensor:
            feat_i = self.feats[rows, slot_i]
            return torch.where(over[:, None, None], 0.5 * (feat_i + self.feats[rows, slot_j]), feat_i)

        self._write_feats(rows, slot_i, merged)
        time_i = self.timesteps[rows, slot_i]
        if self.config.merge_timesteps == "average":
            time_i = torch.where(over, 0.5 * (time_i + self.timesteps[rows, slot_j]), time_i)
        self.timesteps[rows, slot_i] = time_i
        self._log_write(slot_i)
        # order: drop position first + 1 and put its slot at the end (free).
        position = torch.arange(slots, device=self.device).expand_as(self.order)
        source = position + (position > first[:, None]).long()
        source[:, -1] = first + 1
        self.order = torch.where(over[:, None], self.order.gather(1, source.clamp(max=slots - 1)), self.order)
        self.lengths -= over.long()
        self._rescore_after_merge(rows, over, first)

    def _rescore_after_merge(self, rows: torch.Tensor, over: torch.Tensor, first: torch.Tensor) -> None:
        """Shift the cached pair scores past the merge left by one; recompute the merged entry's pairs
        with its left neighbour (pair ``first - 1``) and its new right neighbour (pair ``first``)."""
        pairs = self.slots - 1
        position = torch.arange(pairs, device=self.device).expand_as(self.pair_sim)
        shifted = self.pair_sim.gather(1, (position + (position > first[:, None]).long()).clamp(max=pairs - 1))
        merged = self._feat_at(rows, first)
        left = pair_similarity(self._feat_at(rows, first - 1), merged)
        right = pair_similarity(merged, self._feat_at(rows, first + 1))
        for index, score, exists in ((first - 1, left, first > 0), (first, right, first + 1 < self.lengths)):
            index = index.clamp(0, pairs - 1)[:, None]
            shifted.scatter_(1, index, torch.where(exists, score, shifted.gather(1, index)[:, 0])[:, None])
        self.pair_sim = torch.where(over[:, None], shifted, self.pair_sim)

    def _feat_at(self, rows: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """``(B, N, D)``: each row's entry at logical ``position (B,)`` (clamped into range)."""
        slot = self.order.gather(1, position.clamp(0, self.slots - 1)[:, None])[:, 0]
        return self.feats[rows, slot]

    def _drop_oldest(self) -> None:
        over = self.lengths > self.config.capacity
        self.order = torch.where(over[:, None], self.order.roll(-1, dims=1), self.order)
        self.lengths -= over.long()

    def _make_room(self, active: torch.Tensor) -> None:
        """``consolidation="none"``: grow the storage (doubling) before a row can run out of slots."""
        if self.used_slots < self.slots:
            return
        limit = self.config.max_entries
        if self.slots < limit:
            self._grow(min(2 * self.slots, limit))
        elif bool((active & (self.lengths >= limit)).any()):
            raise BankInputError(f"a bank without consolidation reached max_entries={limit}",
                                 "Raise MemoryBankConfig.max_entries, reset the episode, or use consolidation='tome'")

    def _grow(self, slots: int) -> None:
        self._projections = None
        extra = slots - self.slots
        batch = self.batch_size
        with torch.enable_grad() if self.differentiable else contextlib.nullcontext():
            self.feats = torch.cat([self.feats, self.feats.new_zeros(batch, extra, self.num_tokens, self.dim)], dim=1)
        self.timesteps = torch.cat([self.timesteps, self.timesteps.new_zeros(batch, extra)], dim=1)
        new = torch.arange(self.slots - extra, slots, device=self.device).repeat(batch, 1)
        self.order = torch.cat([self.order, new], dim=1)
        self.pair_sim = self.timesteps.new_zeros(batch, slots - 1)

    def _log_write(self, slot: torch.Tensor) -> None:
        if self._written is not None:
            self._written.append(slot)
            if len(self._written) > self.slots:  # cheaper to recompute everything next time
                self._written = None

    @outside_autograd
    def projections(self, project: Callable, version: object) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per retrieval block, the projected ``(keys, values)`` of the slots in use, each
        ``(B, S' * N, D)`` in ``view()``'s slot order, kept between calls (inference only).

        Only slots written since the previous call are projected again, unless ``version`` (the
        weights' version) changed, which recomputes all of them.

        Args:
            project: ``(feats (..., N, D), timesteps (...)) -> [(keys, values) (..., N, D) per block]``.
            version: anything comparable that changes when ``project``'s weights change.
        """
        used, cache = self.used_slots, self._projections
        if cache is None or cache[0] != version or self._written is None:
            blocks = []
            for keys, values in project(self.feats[:, :used], self.timesteps[:, :used]):
                full = [keys.new_zeros(*self.feats.shape[:2], *keys.shape[2:]) for _ in range(2)]
                full[0][:, :used], full[1][:, :used] = keys, values
                blocks.append(tuple(full))
            cache = (version, blocks)
        elif self._written:
            rows = torch.arange(self.batch_size, device=self.device)[:, None]
            slots = torch.stack(self._written, dim=1)  # (B, k)
            for (keys, values), (new_keys, new_values) in zip(cache[1], project(self.feats[rows, slots],
                                                                                self.timesteps[rows, slots])):
                keys[rows, slots], values[rows, slots] = new_keys, new_values
        self._projections, self._written = cache, []
        batch = self.batch_size
        return [(keys[:, :used].reshape(batch, used * self.num_tokens, -1),
                 values[:, :used].reshape(batch, used * self.num_tokens, -1)) for keys, values in cache[1]]

    def entries(self, row: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Row ``row``'s bank oldest first: ``(timesteps (T,), feats (T, N, D))`` (for tests and
        inspection; it synchronises with the device)."""
        slots = self.order[row, : int(self.lengths[row])]
        return self.timesteps[row, slots], self.feats[row, slots]

    def state_dict(self) -> dict:
        """Exact copy of the storage (physical layout included), detached and cloned."""
        state = {key: getattr(self, key).detach().clone() for key in STATE_KEYS}
        state["used_slots"] = self.used_slots
        return state

    @classmethod
    @outside_autograd
    def from_state_dict(cls, state: dict, config: MemoryBankConfig, device: torch.device | str) -> BankStorage:
        """Rebuild a storage saved by :meth:`state_dict` (shapes checked against ``config``)."""
        feats = state["feats"]
        storage = cls(feats.shape[0], feats.shape[2], feats.shape[3], config, device, feats.dtype)
        expected_slots = storage.slots if config.consolidation != "none" else feats.shape[1]
        if feats.shape[1] != expected_slots:
            raise BankInputError(f"the saved bank has {feats.shape[1]} slots per row but capacity "
                                 f"{config.capacity} needs {expected_slots}",
                                 "Load it into a memory built with the config it was saved with")
        for key in STATE_KEYS:
            setattr(storage, key, state[key].detach().clone().to(device))
        storage.used_slots = int(state["used_slots"])
        storage._written = None
        return storage
