"""Procedural scenes with exact ground truth (RGB, depth, poses, instance masks, boxes, dynamic labels).

Build a scene from a preset (``build_scene("distractors", SceneParams(seed=3))``) or from your own
:class:`SceneSpec`; render it with :class:`Renderer`, stream it with
``open_source("synthetic://distractors?seed=3")``, or write it to disk with :func:`write_scene`.
"""

from streaming.synthetic.presets import SCENE_PRESETS, SceneParams, build_scene, parse_uri
from streaming.synthetic.render import RenderedFrame, Renderer
from streaming.synthetic.scene import (
    Appearance,
    CameraSpec,
    Keyframes,
    Lighting,
    ObjectSpec,
    RoomSpec,
    SceneSpec,
    constant,
)
from streaming.synthetic.writer import write_scene

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
    "SceneParams",
    "SceneSpec",
    "build_scene",
    "constant",
    "parse_uri",
    "write_scene",
]
