"""The candidate backends the tracking stage builds by name (``backend:`` in its options).

A backend is registered as a factory ``factory(options) -> CandidateBackend`` that receives the
stage's :class:`~memstream.tracking.options.TrackingOptions`; the built-in ones read their own section
(``classical``, ``sam2``). The name is checked against :data:`BACKENDS` when the options are parsed,
so a backend registered by a user's code before the run starts is reachable from YAML::

    from memstream.tracking.backends import BACKENDS

    @BACKENDS.register("mine")
    def build_mine(options: TrackingOptions) -> CandidateBackend:
        return MyBackend()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from memstream.streaming.registry import Registry

if TYPE_CHECKING:
    from memstream.tracking.options import TrackingOptions
    from memstream.tracking.protocol import CandidateBackend

BackendFactory = Callable[["TrackingOptions"], "CandidateBackend"]
BACKENDS: Registry[BackendFactory] = Registry("tracking backend")


@BACKENDS.register("classical")
def build_classical(options: TrackingOptions) -> CandidateBackend:
    """The weight-free OpenCV backend with ``options.classical``."""
    from memstream.tracking.classical import ClassicalBackend

    return ClassicalBackend(options.classical)


@BACKENDS.register("sam2")
def build_sam2(options: TrackingOptions) -> CandidateBackend:
    """SAM 2 from ``options.sam2`` (loads the weights); SAMURAI's ``min_obj_score_logit`` applies
    under SAMURAI selection, SAM 2's own (0) otherwise."""
    from memstream.tracking.sam2_stream.backend import Sam2Backend

    sam2 = options.sam2
    min_logit = options.samurai.min_obj_score_logit if options.selection == "samurai" else 0.0
    return Sam2Backend.from_pretrained(
        sam2.checkpoint, sam2.model_config, device=sam2.device, image_size=sam2.image_size, min_obj_score_logit=min_logit,
    )
