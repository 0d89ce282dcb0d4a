"""The 3D memory: a Mem4D-style persistent static map beside a transient dynamics memory.

:class:`DualMemory3D` (``memory.py``) splits each RGB-D frame into static and moving pixels (the
tracking stage's masks, synthetic ground truth, or depth in front of the map) and feeds two
memories: the static TSDF map (``psm.py``, :class:`PersistentStructureMemory`, open3d, bounded by a
block budget) and the moving objects' recent points (``tdm.py``, :class:`TransientDynamicsMemory`,
a sliding window per object). Poses come with the frames or are estimated against the map
(``registration.py``); depth can be predicted from RGB by a monocular model (``depth_model.py``).
``topdown.py`` gives planners a 2D occupancy and height grid of both memories;
``eval.py`` scores maps and trajectories against ground truth; ``geometry.py`` holds the camera
maths; the ``map3d`` stage and the ``reconstruct`` command run it over a stream. Names are loaded on
first use (scipy, open3d, transformers only when needed).

Example:
    >>> from memstream.streaming import open_source
    >>> from memstream.embodied.map3d import DualMemory3D, Map3DConfig
    >>> memory = DualMemory3D(Map3DConfig(dynamic_masks=("ground_truth",)))
    >>> with open_source("synthetic://dynamic_room?frames=40&size=120x90&seed=2", max_frames=6) as source:
    ...     for frame in source:
    ...         update = memory.update(frame)
    >>> update.fused, update.object_ids  # the three moving objects went to the dynamics memory
    (True, (1, 2, 3))
    >>> points, colors = memory.static_points()  # (N, 3) metres, world frame; (N, 3) colours
    >>> points.shape[1], memory.object_position(1, at_s=frame.timestamp_s).shape
    (3, (3,))
"""

from __future__ import annotations

from memstream.streaming.lazy import lazy_attributes

_LAZY = {  # name -> module that defines it, imported on first use
    "DepthInputError": "memstream.embodied.map3d.memory",
    "DualMemory3D": "memstream.embodied.map3d.memory",
    "Map3DConfig": "memstream.embodied.map3d.memory",
    "Map3DUpdate": "memstream.embodied.map3d.memory",
    "PSMConfig": "memstream.embodied.map3d.psm",
    "PersistentStructureMemory": "memstream.embodied.map3d.psm",
    "DynamicObservation": "memstream.embodied.map3d.tdm",
    "TDMConfig": "memstream.embodied.map3d.tdm",
    "TransientDynamicsMemory": "memstream.embodied.map3d.tdm",
    "FrameToModelRegistration": "memstream.embodied.map3d.registration",
    "RegistrationConfig": "memstream.embodied.map3d.registration",
    "RegistrationResult": "memstream.embodied.map3d.registration",
    "TopDownView": "memstream.embodied.map3d.topdown",
    "top_down_view": "memstream.embodied.map3d.topdown",
    "DepthModelError": "memstream.embodied.map3d.depth_model",
    "MonocularDepth": "memstream.embodied.map3d.depth_model",
    "load_depth_model": "memstream.embodied.map3d.depth_model",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


__all__ = sorted(_LAZY)
