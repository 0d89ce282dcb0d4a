"""The ``scene`` stage of ``memstream run``: the scene memory over the stream, saved with the run.

Runs after the tracking stage (ids, names, masks) and, when it runs, the 3D memory (depth, camera
and pose for each frame; without it the frame's own, else image-plane positions). Writes
``OUT/scene.json`` (the memory's ``state_dict``, JSON) every ``save_every_frames`` frames and at
the end, each time whole (written beside and renamed), so ``memstream query OUT "where cup"`` reads a
running run as well as a finished one. ``resume_from`` (a run folder or a ``scene.json``) continues
an earlier run's memory: a stream whose frame numbers or clock start again is placed after it
(one frame interval after its last frame).

Example config::

    stages:
      - name: tracking
        options: {prompts: [{object_id: 1, name: cup, box: [120, 80, 60, 90]}]}
      - name: map3d
      - name: scene
        options: {motion_start_m: 0.15, save_every_frames: 300}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from memstream.embodied.scene.config import SceneConfig
from memstream.embodied.scene.memory import SceneMemory
from memstream.embodied.scene.types import SceneQueryError, SceneUpdate
from memstream.streaming.atomic import write_json_atomic
from memstream.streaming.configtypes import strict_config
from memstream.streaming.errors import ConfigError
from memstream.streaming.pipeline.protocol import RunContext, Upstream
from memstream.streaming.pipeline.stages import parse_options
from memstream.streaming.types import Frame

SCENE_FILE = "scene.json"


@strict_config
@dataclass(frozen=True)
class SceneOptions(SceneConfig):
    """Options of the ``scene`` stage: :class:`SceneConfig`'s fields (caps and thresholds, with its
    defaults) and what the stage writes.

    Attributes:
        save_every_frames: write ``scene.json`` every this many frames (0: only at the end).
        resume_from: a run folder (its ``scene.json``) or a ``scene.json`` to continue from.
    """

    save_every_frames: Annotated[int, Field(ge=0)] = 300
    resume_from: str | None = None

    def memory_config(self) -> SceneConfig:
        return SceneConfig(**{f.name: getattr(self, f.name) for f in fields(SceneConfig)})


def load_scene(path: Path) -> SceneMemory:
    """The scene memory saved in a run folder (or a ``scene.json``).

    Raises:
        ConfigError: no such folder or file, or the folder holds no ``scene.json`` (the run had no
            ``scene`` stage, or it has not saved yet).
        SceneQueryError: the file is not a scene memory of this version.
    """
    path = Path(path)
    file = path / SCENE_FILE if path.is_dir() else path
    if not path.exists():
        raise ConfigError(
            f"no run folder {str(path)!r}",
            "Give the --out folder of a run with the scene stage "
            "(memstream run SOURCE --config scene --out DIR)",
        )
    if not file.is_file():
        raise ConfigError(
            f"{str(path)!r} holds no {SCENE_FILE}",
            "Run with the scene stage (memstream run SOURCE --config scene --out DIR); a running run "
            "writes it after its first save_every_frames frames",
        )
    try:
        state = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SceneQueryError(
            f"{file} is not a scene memory ({exc})", "Point at the scene.json a run wrote"
        ) from None
    return SceneMemory.from_state(state)


class SceneStage:
    """Feeds the scene memory every frame and saves it; see the module docstring."""

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        self.options = parse_options(SceneOptions, name, options)
        self.memory = SceneMemory(self.options.memory_config())
        self._path: Path | None = None
        self._frames = 0
        # (frames, seconds) added to a resumed stream that starts its clock again; None until its first frame
        self._offset: tuple[int, float] | None = (0, 0.0)

    def open(self, context: RunContext) -> None:
        if self.options.resume_from is not None:
            self.memory = load_scene(Path(self.options.resume_from))
            self._offset = None
        stages = [s.get("name") for s in context.config.get("stages", []) if s.get("enabled", True)]
        if (
            stages
            and "tracking" not in stages[: stages.index(self.name) if self.name in stages else len(stages)]
        ):
            context.notice(
                self.name,
                "no tracking stage runs before it, so no object is recorded. Enable the "
                "tracking stage with prompts (--box NAME:X,Y,W,H) or gt_objects",
            )
        if context.out_dir is not None:
            self._path = Path(context.out_dir) / SCENE_FILE

    def update(self, frame: Frame, upstream: Upstream) -> SceneUpdate:
        if self._offset is None:  # resumed: continue the saved counts where this stream restarts its own
            last_s, last_frame = self.memory.latest_s, self.memory.latest_frame
            step = self.memory.frame_interval_s or 0.0
            index = last_frame + 1 - frame.index if frame.index <= last_frame else 0
            seconds = (
                last_s + step - frame.timestamp_s
                if last_s is not None and frame.timestamp_s <= last_s
                else 0.0
            )
            self._offset = (index, seconds)
        if self._offset != (0, 0.0):
            frame = replace(
                frame, index=frame.index + self._offset[0], timestamp_s=frame.timestamp_s + self._offset[1]
            )
        result = self.memory.update(frame, upstream)
        self._frames += 1
        every = self.options.save_every_frames
        if every and self._frames % every == 0:
            self.save()
        return result

    def save(self) -> None:
        """Write ``scene.json`` whole (readers never see half a file)."""
        if self._path is not None:
            write_json_atomic(self._path, self.memory.state_dict())

    def close(self) -> None:
        self.save()

    def summary(self) -> dict[str, Any]:
        objects = [
            {
                "id": o.object_id,
                "name": o.name,
                "first_seen_s": round(o.first_seen_s, 3),
                "last_seen_s": round(o.last_seen_s, 3),
            }
            for o in self.memory.objects()
        ]
        return {
            "frames": self._frames,
            "memory": self.memory.memory_summary(),
            "objects": objects,
            "files": [SCENE_FILE] if self._path is not None else [],
        }


def make_stage(name: str, options: Mapping[str, Any]) -> SceneStage:
    """Entry point of the ``memstream.stages`` group."""
    return SceneStage(name, options)
