"""Each object's bounded memory bank for SAM 2, and which of its entries a frame attends to.

SAM 2 keeps every frame's outputs for the whole video but reads only a few of them per frame: the
conditioning (prompt) frames, the ``num_maskmem - 1`` (= 6) previous memory frames, and the object
pointers of the ``max_obj_ptrs_in_encoder - 1`` (= 15) previous frames. This bank keeps exactly
what can still be read, so its size is constant on an endless stream:

* ``cond``: the prompt frames (user input; SAM 2.1 attends to all of them, ``max_cond_frames_in_attn
  = -1``, or the closest ones when that is set);
* ``accepted``: up to 6 non-conditioning frames that passed the memory gate (SAMURAI) — in
  ``affinity`` mode every frame passes, so this is SAM 2's window of the last 6 frames;
* ``previous``: the most recent non-conditioning frame, always attended (as in SAMURAI, which
  appends ``frame_idx - 1`` to its selection whatever its scores);
* ``pointers``: the object pointers of the last 15 non-conditioning frames (SAMURAI leaves SAM 2's
  pointer rule unchanged: recent frames regardless of quality).

Defect of the reference fixed here: SAMURAI re-scans the whole history backwards every frame
(O(N) per frame, and every output kept); the gate is applied once, when a frame is inserted.
SAMURAI also never scans frames 0 and 1 (its loop stops at index 2); here every non-conditioning
frame is gated alike.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class MemoryEntry:
    """One frame's memory for one object.

    Attributes:
        frame_index: the frame's index in the stream.
        features: ``(1, mem_dim, h, w)`` spatial memory from SAM 2's memory encoder (bf16, as SAM 2
            stores it), or None for a pointer-only entry.
        obj_ptr: ``(1, hidden_dim)`` object pointer.
    """

    frame_index: int
    features: torch.Tensor | None
    obj_ptr: torch.Tensor


@dataclass(frozen=True)
class MemoryReadout:
    """What one frame attends to for one object: spatial memories with their temporal slot, and
    object pointers with their signed frame distance.

    Attributes:
        spatial: ``(t_pos, entry)``; ``t_pos`` 0 for conditioning frames, ``num_maskmem - k`` for the
            k-th most recent selected frame (SAM 2's encoding: slot ``num_maskmem - 1`` is nearest).
        pointers: ``(frame distance, obj_ptr)``, conditioning frames first.
    """

    spatial: tuple[tuple[int, MemoryEntry], ...]
    pointers: tuple[tuple[int, torch.Tensor], ...]

    @property
    def layout(self) -> tuple[tuple[int, ...], int]:
        """Objects with the same layout can share one batched memory-attention call."""
        return tuple(t for t, _ in self.spatial), len(self.pointers)


@dataclass
class ObjectMemory:
    """One object's bank (see the module docstring); sizes fixed at construction.

    Args:
        num_maskmem: SAM 2's ``num_maskmem`` (7: 1 conditioning slot + 6 previous frames).
        max_obj_ptrs: SAM 2's ``max_obj_ptrs_in_encoder`` (16: conditioning + 15 previous).
        max_cond_frames: ``max_cond_frames_in_attn`` (-1: all prompt frames are attended).
    """

    num_maskmem: int = 7
    max_obj_ptrs: int = 16
    max_cond_frames: int = -1
    cond: dict[int, MemoryEntry] = field(default_factory=dict)
    accepted: deque[MemoryEntry] = field(init=False)
    previous: MemoryEntry | None = None
    pointers: deque[MemoryEntry] = field(init=False)

    def __post_init__(self) -> None:
        self.accepted = deque(maxlen=self.num_maskmem - 1)
        self.pointers = deque(maxlen=self.max_obj_ptrs - 1)

    def add_cond(self, entry: MemoryEntry) -> None:
        """A prompt frame: kept for as long as the object lives."""
        self.cond[entry.frame_index] = entry

    def add(self, entry: MemoryEntry, accepted: bool) -> None:
        """A tracked frame: always the new ``previous`` and pointer; kept longer only if ``accepted``."""
        if accepted:
            self.accepted.append(entry)
        self.previous = entry
        self.pointers.append(MemoryEntry(entry.frame_index, None, entry.obj_ptr))

    def readout(self, frame_index: int) -> MemoryReadout:
        """The memories frame ``frame_index`` attends to (SAMURAI's selection; SAM 2's when every
        frame is accepted)."""
        cond = self._cond_in_attention(frame_index)
        selected = [e for e in self.accepted if e.frame_index < frame_index]
        if self.previous is not None and all(e.frame_index != self.previous.frame_index for e in selected):
            selected.append(self.previous)
        selected = selected[-(self.num_maskmem - 1):]
        spatial = [(0, e) for e in cond.values()]
        spatial += [(self.num_maskmem - k, e) for k, e in enumerate(reversed(selected), start=1)][::-1]
        pointers = [(frame_index - t, e.obj_ptr) for t, e in cond.items() if t <= frame_index]
        pointers += [
            (frame_index - e.frame_index, e.obj_ptr)
            for e in reversed(self.pointers)
            if 0 < frame_index - e.frame_index < self.max_obj_ptrs
        ]
        return MemoryReadout(tuple(spatial), tuple(pointers))

    def _cond_in_attention(self, frame_index: int) -> dict[int, MemoryEntry]:
        if self.max_cond_frames == -1 or len(self.cond) <= self.max_cond_frames:
            return dict(sorted(self.cond.items()))
        from sam2.modeling.sam2_utils import select_closest_cond_frames

        selected, _ = select_closest_cond_frames(frame_index, self.cond, self.max_cond_frames)
        return dict(sorted(selected.items()))

    def frames(self) -> dict[str, list[int]]:
        """Frame indices held, by role."""
        return {
            "cond": sorted(self.cond),
            "accepted": [e.frame_index for e in self.accepted],
            "previous": [] if self.previous is None else [self.previous.frame_index],
            "pointers": [e.frame_index for e in self.pointers],
        }

    def nbytes(self) -> int:
        """Bytes of the tensors held, each counted once (pointers share their frame's tensor)."""
        entries = [*self.cond.values(), *self.accepted, *self.pointers]
        entries += [self.previous] if self.previous is not None else []
        tensors = {id(t): t for e in entries for t in (e.features, e.obj_ptr) if t is not None}
        return sum(t.numel() * t.element_size() for t in tensors.values())

    def state_dict(self) -> dict[str, Any]:
        """The bank as CPU tensors by frame index and the role lists (``torch.save``-able, loadable
        with ``weights_only=True``); an entry in several roles is stored once."""
        full = {e.frame_index: e for e in [*self.cond.values(), *self.accepted]}
        if self.previous is not None:
            full[self.previous.frame_index] = self.previous
        pointer_only = {e.frame_index: e.obj_ptr.cpu() for e in self.pointers if e.frame_index not in full}
        return {
            "entries": {t: {"features": e.features.cpu(), "obj_ptr": e.obj_ptr.cpu()} for t, e in full.items()},
            "pointers": pointer_only, "cond": sorted(self.cond), "accepted": [e.frame_index for e in self.accepted],
            "previous": None if self.previous is None else self.previous.frame_index,
            "pointer_frames": [e.frame_index for e in self.pointers],
        }

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        """Replace the bank's contents with ``state`` (from :meth:`state_dict`), on ``device``."""
        full = {t: MemoryEntry(t, e["features"].to(device), e["obj_ptr"].to(device)) for t, e in state["entries"].items()}
        self.cond = {t: full[t] for t in state["cond"]}
        self.accepted.clear()
        self.accepted.extend(full[t] for t in state["accepted"])
        self.previous = None if state["previous"] is None else full[state["previous"]]
        self.pointers.clear()
        for t in state["pointer_frames"]:
            ptr = full[t].obj_ptr if t in full else state["pointers"][t].to(device)
            self.pointers.append(MemoryEntry(t, None, ptr))
