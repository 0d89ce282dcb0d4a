"""MemoryVLA's perceptual-cognitive memory bank for B parallel episodes.

Two streams, each with its own bank, timestep embedding, retrieval blocks and fusion: perceptual
tokens ``(B, N, Cp)`` (MemoryVLA: 256 x 256 from the vision encoder) and the cognitive token
``(B, 1, Dc)`` (the VLM's last hidden state, 4096). Each step, per slot: retrieve from the slot's own
episode bank, fuse with the current tokens (``forward``), then store this step's tokens and
consolidate (``update``); ``step`` does both. Stored tokens carry no gradients (unless
``store_gradients``: backpropagation through the bank in training); the layers train.

Episodes are explicit: ``reset(slots)`` starts a new episode in those slots and gives it a fresh id
(``episode_ids``). A slot that was never started is refused, and a caller may pass the ids it
believes are running (``episode_ids=``) to catch a missed reset.

Example:
    >>> memory = PerceptualCognitiveMemory(perceptual_dim=32, cognitive_dim=64)
    >>> memory.reset(batch_size=2)
    >>> out = memory.step(torch.randn(2, 4, 32), torch.randn(2, 1, 64))  # timestep: steps since reset
    >>> out.perceptual.shape, out.bank_lengths.tolist(), memory.bank_lengths.tolist()
    (torch.Size([2, 4, 32]), [0, 0], [1, 1])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .config import MemoryBankConfig
from .layers import MemoryStream
from .storage import BankStorage, outside_autograd
from .types import (STREAMS, BankInputError, BankReadout, check_active, check_episode_ids, check_slots,
                    check_timestep, check_tokens)

STATE_FORMAT = "memstream.bank/1"
NOT_STARTED = -1


class PerceptualCognitiveMemory(nn.Module):
    """Batched perceptual-cognitive memory bank (weights in ``state_dict``, episodes in
    ``bank_state_dict``).

    Args:
        perceptual_dim: Cp, channels of a perceptual token.
        cognitive_dim: Dc, channels of a cognitive token.
        config: bank settings; MemoryVLA's openvla defaults when omitted.
        streams: the streams with a bank (ablations: ``("perceptual",)`` or ``("cognitive",)``); a
            stream left out passes its current tokens through unchanged and stores nothing.
    """

    def __init__(self, perceptual_dim: int, cognitive_dim: int, config: MemoryBankConfig | None = None,
                 streams: Sequence[str] = STREAMS) -> None:
        super().__init__()
        self.config = config or MemoryBankConfig()
        unknown = set(streams) - set(STREAMS)
        if unknown or not streams:
            raise BankInputError(f"streams must be a non-empty subset of {STREAMS}, got {tuple(streams)!r}")
        self.dims = {"perceptual": perceptual_dim, "cognitive": cognitive_dim}
        self.streams = tuple(s for s in STREAMS if s in streams)
        self.perceptual = MemoryStream(perceptual_dim, self.config) if "perceptual" in self.streams else None
        self.cognitive = MemoryStream(cognitive_dim, self.config) if "cognitive" in self.streams else None
        self._storage: dict[str, BankStorage | None] = dict.fromkeys(STREAMS)
        self._episode_ids: torch.Tensor | None = None  # int64 (B,) on the CPU; NOT_STARTED = never reset
        self._start_all_on_first_use = False
        self._next_episode_id = 0
        self._steps: torch.Tensor | None = None  # int64 (B,): updates since each slot's reset
        #: keep the autograd history of stored tokens (set before the first update after a reset; see
        #: ``BankStorage``'s ``differentiable``): a policy trained by backpropagation through the bank
        #: teaches its encoder what to write, e.g. the cue of an early frame that the loss needs later.
        self.store_gradients = False

    # ------------------------------------------------------------------ episodes
    def reset(self, slots: Sequence[int] | torch.Tensor | int | None = None, *,
              batch_size: int | None = None) -> None:
        """Start new episodes: empty the banks of ``slots`` and give each a fresh episode id.

        Args:
            slots: slot indices, an int, or a bool mask ``(B,)``; None = every slot. With None and no
                ``batch_size`` the batch size is taken from the next ``forward``/``update``/``step``.
            batch_size: B; sizes (or re-sizes, when ``slots`` is None) the bank now.

        Raises:
            BankInputError: ``slots`` out of range, or given before the batch size is known.
        """
        if slots is None:
            for name in STREAMS:
                self._storage[name] = None
            self._episode_ids, self._steps = None, None
            self._start_all_on_first_use = batch_size is None
            if batch_size is not None:
                self._size(batch_size, start=True)
            return
        if self._episode_ids is None:
            if batch_size is None:
                raise BankInputError("reset(slots) was called before the bank knows its batch size",
                                     "Pass batch_size=B, or call reset() (all slots) first")
            self._size(batch_size, start=False)
        elif batch_size is not None and batch_size != len(self._episode_ids):
            raise BankInputError(f"reset(slots, batch_size={batch_size}) but the bank has "
                                 f"{len(self._episode_ids)} slots",
                                 "Call reset(batch_size=B) without slots to start over with a new batch size")
        rows = check_slots(slots, len(self._episode_ids))
        self._start(rows)
        for storage in self._storage.values():
            if storage is not None:
                storage.reset(rows)

    @property
    def episode_ids(self) -> torch.Tensor | None:
        """int64 ``(B,)``: each slot's current episode id (-1: never started); None before sizing."""
        return None if self._episode_ids is None else self._episode_ids.clone()

    @property
    def bank_lengths(self) -> torch.Tensor | None:
        """int64 ``(B,)``: entries per slot's bank (equal for both streams); None before sizing."""
        if self._episode_ids is None:
            return None
        storage = self._storage[self.streams[0]]
        return torch.zeros_like(self._episode_ids) if storage is None else storage.lengths.clone()

    @outside_autograd
    def _size(self, batch_size: int, start: bool) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise BankInputError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self._episode_ids = torch.full((batch_size,), NOT_STARTED, dtype=torch.long)
        self._steps = torch.zeros(batch_size, dtype=torch.long)
        self._start_all_on_first_use = False
        if start:
            self._start(torch.arange(batch_size))

    @outside_autograd
    def _start(self, rows: torch.Tensor) -> None:
        self._episode_ids[rows] = torch.arange(self._next_episode_id, self._next_episode_id + len(rows))
        self._next_episode_id += len(rows)
        self._steps[rows.to(self._steps.device)] = 0

    def _check_started(self, batch_size: int, episode_ids: torch.Tensor | Sequence[int] | None) -> None:
        if self._episode_ids is None:
            if not self._start_all_on_first_use:
                raise BankInputError("the memory bank has no started episode",
                                     "Call memory.reset() (or reset(batch_size=B)) at the start of the episodes")
            self._size(batch_size, start=True)
        if batch_size != len(self._episode_ids):
            raise BankInputError(f"got a batch of {batch_size} but the bank was started with "
                                 f"{len(self._episode_ids)} slots",
                                 "Keep the batch size of an episode's run, or call reset(batch_size=B) to start over")
        not_started = (self._episode_ids == NOT_STARTED).nonzero().flatten().tolist()
        if not_started:
            raise BankInputError(f"slots {not_started} were never started",
                                 f"Call memory.reset(slots={not_started}) first")
        if episode_ids is not None:
            check_episode_ids(episode_ids, self._episode_ids)

    # ------------------------------------------------------------------ steps
    def forward(self, perceptual: torch.Tensor, cognitive: torch.Tensor, timestep: torch.Tensor | int | None = None,
                *, episode_ids: torch.Tensor | Sequence[int] | None = None) -> BankReadout:
        """Retrieve from each slot's bank and fuse with the current tokens (the bank is not changed).

        Args:
            perceptual: ``(B, N, Cp)`` floating current perceptual tokens.
            cognitive: ``(B, Nc, Dc)`` floating current cognitive tokens (Nc = 1 in MemoryVLA).
            timestep: ``(B,)`` or scalar episode step index >= 0; None = updates since each slot's reset.
            episode_ids: optional ``(B,)`` ids the caller expects (from ``episode_ids``); a mismatch raises.

        Returns:
            The fused and retrieved tokens, gates and bank lengths (see ``BankReadout``).
        """
        tokens, timestep = self._inputs(perceptual, cognitive, timestep, episode_ids)
        return self._read(tokens, timestep)

    @torch.no_grad()
    def update(self, perceptual: torch.Tensor, cognitive: torch.Tensor, timestep: torch.Tensor | int | None = None,
               fused: BankReadout | None = None, *, active: torch.Tensor | Sequence[bool] | None = None,
               episode_ids: torch.Tensor | Sequence[int] | None = None) -> None:
        """Store this step's tokens (raw, or ``fused``'s with ``update_fused``) and consolidate.

        Args:
            perceptual, cognitive, timestep, episode_ids: as in ``forward``.
            fused: this step's ``forward`` output; required when ``config.update_fused``.
            active: bool ``(B,)``; False rows store nothing and keep their step count (e.g. finished
                environments waiting for a reset). None = all.
        """
        tokens, timestep = self._inputs(perceptual, cognitive, timestep, episode_ids)
        self._store(tokens, timestep, fused, active)

    def step(self, perceptual: torch.Tensor, cognitive: torch.Tensor, timestep: torch.Tensor | int | None = None,
             *, active: torch.Tensor | Sequence[bool] | None = None,
             episode_ids: torch.Tensor | Sequence[int] | None = None) -> BankReadout:
        """``forward`` then ``update`` with its readout: one control step of every slot."""
        tokens, timestep = self._inputs(perceptual, cognitive, timestep, episode_ids)
        readout = self._read(tokens, timestep)
        with torch.no_grad():
            self._store(tokens, timestep, readout, active)
        return readout

    def _read(self, tokens: dict[str, torch.Tensor], timestep: torch.Tensor) -> BankReadout:
        out: dict[str, torch.Tensor | None] = {}
        for name, current in tokens.items():
            stream, storage = getattr(self, name), self._storage[name]
            if stream is None:  # ablation: this stream has no bank
                out[name], out[f"retrieved_{name}"], out[f"{name}_gate"] = current, current, None
                continue
            if storage is None:
                batch, count, dim = current.shape
                feats, times = current.new_zeros(batch, 0, count, dim), current.new_zeros(batch, 0)
                valid = torch.zeros(batch, 0, dtype=torch.bool, device=current.device)
            else:
                feats, times, valid = storage.to(current.device).view()
            projected = None
            if torch.is_grad_enabled():
                # Autograd saves the entries for the projections' weight gradients, and later updates
                # write the storage in place: a loss summed over steps (MemoryVLA's 16-frame groups)
                # would fail in backward without this copy.
                feats = feats.clone()
            elif self.config.cache_projections and storage is not None:
                projected = storage.projections(stream.project_entries, stream.weights_version())
            fused, retrieved, gate = stream(current, feats, times, valid, projected)
            out[name], out[f"retrieved_{name}"], out[f"{name}_gate"] = fused, retrieved, gate
        return BankReadout(bank_lengths=self.bank_lengths.to(timestep.device), timestep=timestep, **out)

    @outside_autograd
    def _store(self, tokens: dict[str, torch.Tensor], timestep: torch.Tensor, fused: BankReadout | None,
               active: object) -> None:
        if self.config.update_fused:
            if not isinstance(fused, BankReadout):
                raise BankInputError("update_fused=True stores the fused tokens but update() got no readout",
                                     "Pass fused=memory(perceptual, cognitive, timestep), or use step()")
            tokens = {name: check_tokens(f"fused.{name}", fused.fused(name), self.dims[name], current)
                      for name, current in tokens.items()}
        batch, device = timestep.shape[0], timestep.device
        active = check_active(active, batch, device)
        for name in self.streams:
            current = tokens[name]
            if self._storage[name] is None:
                self._storage[name] = BankStorage(batch, current.shape[1], self.dims[name], self.config, device,
                                                  current.dtype, differentiable=self.store_gradients)
            self._storage[name].to(device).append(current, timestep, active)
        self._steps = self._steps.to(device) + active.long()

    # ------------------------------------------------------------------ helpers
    def _inputs(self, perceptual: object, cognitive: object, timestep: object,
                episode_ids: object) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Checked tokens per stream and float32 ``(B,)`` timesteps (raises ``BankInputError``)."""
        tokens = {"perceptual": check_tokens("perceptual", perceptual, self.dims["perceptual"])}
        tokens["cognitive"] = check_tokens("cognitive", cognitive, self.dims["cognitive"], like=tokens["perceptual"])
        batch, device = tokens["perceptual"].shape[0], tokens["perceptual"].device
        self._check_started(batch, episode_ids)
        for name, current in tokens.items():
            storage = self._storage[name]
            if storage is not None and storage.num_tokens != current.shape[1]:
                raise BankInputError(f"{name} has {current.shape[1]} tokens per slot but the bank holds "
                                     f"{storage.num_tokens}-token entries",
                                     "Keep the token count fixed, or call reset() to start over with the new one")
        if timestep is None:
            return tokens, self._steps.to(device).float()
        return tokens, check_timestep(timestep, batch, device)

    # ------------------------------------------------------------------ episodic state
    def bank_state_dict(self) -> dict:
        """The episodic state (stored entries, episode ids, step counts), detached copies; the
        weights are in ``state_dict()``. Restore with ``load_bank_state_dict``."""
        return {
            "format": STATE_FORMAT,
            "streams": self.streams,
            "dims": dict(self.dims),
            "capacity": self.config.capacity,
            "consolidation": self.config.consolidation,
            "episode_ids": None if self._episode_ids is None else self._episode_ids.clone(),
            "steps": None if self._steps is None else self._steps.clone(),
            "next_episode_id": self._next_episode_id,
            "start_all_on_first_use": self._start_all_on_first_use,
            "storage": {name: None if s is None else s.state_dict() for name, s in self._storage.items()},
        }

    @outside_autograd
    def load_bank_state_dict(self, state: dict) -> None:
        """Restore what ``bank_state_dict`` saved (onto the device of this module's parameters).

        Raises:
            BankInputError: the state is not a bank state, or was saved by a memory with other
                streams, channel counts, capacity or consolidation.
        """
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise BankInputError(f"not a memory-bank state (format {STATE_FORMAT!r} expected)",
                                 "Pass what bank_state_dict() returned; model weights go to load_state_dict()")
        mine = {"streams": self.streams, "dims": self.dims, "capacity": self.config.capacity,
                "consolidation": self.config.consolidation}
        for key, value in mine.items():
            if state[key] != value:
                raise BankInputError(f"the saved bank has {key}={state[key]!r} but this memory has {value!r}",
                                     "Build the memory with the settings the bank was saved with")
        device = next(self.parameters()).device
        self._storage = {name: None if saved is None else BankStorage.from_state_dict(saved, self.config, device)
                         for name, saved in state["storage"].items()}
        self._episode_ids = None if state["episode_ids"] is None else state["episode_ids"].clone()
        self._steps = None if state["steps"] is None else state["steps"].clone()
        self._next_episode_id = int(state["next_episode_id"])
        self._start_all_on_first_use = bool(state["start_all_on_first_use"])

    def extra_repr(self) -> str:
        return f"streams={self.streams}, dims={self.dims}, config={self.config}"
