"""Procedural scenes with exact ground truth (RGB, depth, poses, instance masks, boxes, dynamic labels).

Build a scene from a preset (``build_scene("distractors", seed=3)``) or from your own
:class:`SceneSpec`; render it with :class:`Scene` (random access, Frames with ground truth), stream
it with ``open_source("synthetic://distractors?seed=3")``, or write it to disk with
:func:`write_scene`. By convention object 1 is the tracking target of every preset.
"""

from memstream.streaming.synthetic import presets as _presets  # noqa: F401  (registers the presets)
from memstream.streaming.synthetic import navqa as _navqa  # noqa: F401  (registers the navqa preset)
from memstream.streaming.synthetic.build import SCENE_PRESETS, Scene, SceneParams, build_scene, parse_uri
from memstream.streaming.synthetic.render import RenderedFrame, Renderer
from memstream.streaming.synthetic.scene import (
    Appearance,
    CameraSpec,
    Keyframes,
    Lighting,
    ObjectSpec,
    RoomSpec,
    SceneSpec,
    constant,
)
from memstream.streaming.synthetic.writer import write_scene

__all__ = [
    "SCENE_PRESETS",
    "Appearance",
    "CameraSpec",
    "Keyframes",
    "Lighting",
    "ObjectSpec",
    "RenderedFrame",
    "Renderer",
    "RoomSpec",
    "Scene",
    "SceneParams",
    "SceneSpec",
    "build_scene",
    "constant",
    "parse_uri",
    "write_scene",
]
