"""The seam between SAMURAI's model-agnostic logic and the model that proposes masks.

A :class:`CandidateBackend` (the SAM 2 streaming predictor, or the weight-free classical one) owns
the images, the features and each object's memory bank. Per frame, the :class:`~memstream.tracking.tracker.Tracker`

1. asks it for every tracked object's candidates (:meth:`CandidateBackend.propose`),
2. chooses one candidate per object and decides whether the frame enters the object's memory
   (SAMURAI's motion-aware selection and gate, or plain highest affinity),
3. hands those decisions back (:meth:`CandidateBackend.commit`), and the backend updates the
   memory banks and returns the chosen masks.

A prompt frame skips the choice: :meth:`CandidateBackend.add_prompts` returns the prompted masks
directly and stores the frame as a conditioning memory (as SAM 2 does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from memstream.streaming.types import Frame
from memstream.tracking.types import Candidates, Decision, Prompt


@runtime_checkable
class CandidateBackend(Protocol):
    """Proposes candidate masks per object and keeps a bounded memory bank per object.

    Calls come in this order for each frame: ``add_prompts`` for objects prompted on it (possibly
    none), then ``propose`` for the other tracked objects, then ``commit`` with one decision for each
    object ``propose`` returned. ``propose`` may not be called twice without a ``commit`` between.
    Masks are ``bool (H, W)`` at the frame's resolution; boxes ``xywh`` pixels.
    """

    name: str

    def add_prompts(self, frame: Frame, prompts: Sequence[Prompt]) -> dict[int, tuple[np.ndarray, Candidates]]:
        """Start (or re-prompt) objects on ``frame``; returns ``{object_id: (mask, candidates)}``
        where ``candidates`` holds the one prompted mask (row 0) with its scores."""
        ...

    def propose(self, frame: Frame, object_ids: Sequence[int]) -> dict[int, Candidates]:
        """Candidates of each object in ``object_ids`` on ``frame`` (all previously prompted)."""
        ...

    def commit(self, decisions: Mapping[int, Decision]) -> dict[int, np.ndarray]:
        """Apply the decisions for the last ``propose``; returns the chosen mask per object."""
        ...

    def remove_object(self, object_id: int) -> None:
        """Forget an object and its memory."""
        ...

    def reset(self) -> None:
        """Forget every object; the model (weights) stays loaded."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Every object's memory as tensors and plain values (``torch.save``-able, loadable with
        ``weights_only=True``), so a long session survives a restart."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace every object's memory with a :meth:`state_dict` of the same kind of backend."""
        ...

    def memory_summary(self) -> dict[str, Any]:
        """What the memory holds now: per object, the frames in memory and the bytes held."""
        ...
