"""Scene descriptions: a room, a camera path, and textured objects on keyframed trajectories.

Everything is a frozen dataclass so a scene is a value: two equal specs render identical frames.
World axes follow the camera convention of ``memstream.streaming.types`` at the start pose: x right, y down
(the floor is at ``y = +room.floor_y``), z forward. Units are metres and seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Keyframes:
    """A piecewise-linear function of time: constant velocity between keys, held outside them.

    Attributes:
        times_s: increasing key times, seconds, ``(k,)``.
        values: ``(k, d)`` values at the keys.
    """

    times_s: tuple[float, ...]
    values: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        if len(self.times_s) != len(self.values) or not self.times_s:
            raise ValueError("Keyframes need as many values as times, at least one")
        if any(b <= a for a, b in zip(self.times_s, self.times_s[1:])):
            raise ValueError(f"key times must increase, got {self.times_s}")

    def at(self, t_s: float) -> np.ndarray:
        """Value at time ``t_s``, float64 ``(d,)`` (a fresh array)."""
        values = self._values
        if len(values) == 1:
            return values[0].copy()
        return np.array([np.interp(t_s, self.times_s, values[:, j]) for j in range(values.shape[1])])

    @cached_property
    def _values(self) -> np.ndarray:
        return np.asarray(self.values, np.float64)

    @cached_property
    def is_constant(self) -> bool:
        """True when every key holds the same value."""
        return len({tuple(v) for v in self.values}) == 1


def constant(*value: float) -> Keyframes:
    """A value that never changes."""
    return Keyframes((0.0,), (tuple(float(v) for v in value),))


@dataclass(frozen=True)
class Appearance:
    """How a surface looks: two colours mixed by a pattern over a fixed random-noise texture.

    Attributes:
        color_a, color_b: RGB in [0, 1].
        pattern: ``stripes``, ``checker`` or ``plain``.
        cells_per_m: pattern frequency along the surface, cycles per metre.
        texture_seed: seed of the noise texture (same seed = look-alike).
        noise: amplitude of the per-texel noise in [0, 1].
    """

    color_a: tuple[float, float, float]
    color_b: tuple[float, float, float]
    pattern: str = "stripes"
    cells_per_m: float = 6.0
    texture_seed: int = 0
    noise: float = 0.15

    def __post_init__(self) -> None:
        if self.pattern not in ("stripes", "checker", "plain"):
            raise ValueError(f"unknown pattern {self.pattern!r}")


@dataclass(frozen=True)
class ObjectSpec:
    """One object of the scene.

    Attributes:
        object_id: >= 1, the value written in instance masks.
        name: human-readable name (``target``, ``distractor_1``...).
        role: ``target``, ``distractor``, ``occluder``, ``furniture`` or ``mover``.
        shape: ``box`` (a cuboid, yawed about the vertical axis) or ``sphere``.
        half_extent_m: half sizes (x, y, z) of the box at scale 1; a sphere uses ``[0]`` as radius.
        appearance: surface look.
        position: keyframed centre (x, y, z), metres, world frame.
        scale: keyframed uniform scale factor (1-d).
        yaw: keyframed rotation about the world y axis, radians (1-d).
    """

    object_id: int
    name: str
    role: str
    shape: str
    half_extent_m: tuple[float, float, float]
    appearance: Appearance
    position: Keyframes
    scale: Keyframes = field(default_factory=lambda: constant(1.0))
    yaw: Keyframes = field(default_factory=lambda: constant(0.0))

    def __post_init__(self) -> None:
        if self.object_id < 1:
            raise ValueError("object ids start at 1 (0 is the background)")
        if self.shape not in ("box", "sphere"):
            raise ValueError(f"unknown shape {self.shape!r}")

    @property
    def is_dynamic(self) -> bool:
        """True when the object moves, turns or changes size at any time."""
        return not (self.position.is_constant and self.scale.is_constant and self.yaw.is_constant)

    def bounding_radius_m(self, t_s: float) -> float:
        half = np.asarray(self.half_extent_m) if self.shape == "box" else np.full(3, self.half_extent_m[0])
        return float(np.linalg.norm(half) * self.scale.at(t_s)[0])


@dataclass(frozen=True)
class RoomSpec:
    """An axis-aligned room seen from inside.

    Attributes:
        min_m, max_m: opposite corners (x, y, z); y grows downwards, so ``max_m[1]`` is the floor.
        floor, walls, ceiling: appearances of the faces.
    """

    min_m: tuple[float, float, float] = (-4.0, -1.6, -1.5)
    max_m: tuple[float, float, float] = (4.0, 1.4, 9.0)
    floor: Appearance = Appearance((0.55, 0.45, 0.35), (0.35, 0.28, 0.2), "checker", 1.0, 101, 0.2)
    walls: Appearance = Appearance((0.75, 0.75, 0.7), (0.55, 0.6, 0.65), "stripes", 1.5, 102, 0.25)
    ceiling: Appearance = Appearance((0.9, 0.9, 0.88), (0.8, 0.8, 0.78), "plain", 1.0, 103, 0.05)


@dataclass(frozen=True)
class CameraSpec:
    """A pinhole camera on a keyframed path.

    Attributes:
        width_px, height_px: image size.
        hfov_deg: horizontal field of view; fx = fy (square pixels).
        position: keyframed camera centre (x, y, z) in the world, metres.
        yaw: keyframed pan about the world y axis, radians (positive turns right, towards +x).
        pitch: keyframed tilt, radians (positive looks down).
    """

    width_px: int = 320
    height_px: int = 240
    hfov_deg: float = 70.0
    position: Keyframes = field(default_factory=lambda: constant(0.0, 0.0, 0.0))
    yaw: Keyframes = field(default_factory=lambda: constant(0.0))
    pitch: Keyframes = field(default_factory=lambda: constant(0.12))

    @property
    def intrinsics(self) -> np.ndarray:
        """(3, 3) pinhole matrix in pixels; pixel centres at integer coordinates."""
        f = 0.5 * self.width_px / np.tan(np.radians(self.hfov_deg) / 2)
        return np.array(
            [[f, 0, (self.width_px - 1) / 2], [0, f, (self.height_px - 1) / 2], [0, 0, 1]], np.float64
        )

    def pose(self, t_s: float) -> np.ndarray:
        """(4, 4) world_from_cam at ``t_s``."""
        yaw, pitch = self.yaw.at(t_s)[0], self.pitch.at(t_s)[0]
        cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
        r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
        pose = np.eye(4)
        pose[:3, :3] = r_yaw @ r_pitch
        pose[:3, 3] = self.position.at(t_s)
        return pose


@dataclass(frozen=True)
class Lighting:
    """Lambertian light plus ambient, with a global gain that may change over time.

    Attributes:
        direction: unit-ish vector the light travels along (world frame).
        ambient: ambient term in [0, 1].
        gain: keyframed global brightness factor (1-d); a change of it is a lighting change.
    """

    direction: tuple[float, float, float] = (0.3, 1.0, 0.5)
    ambient: float = 0.45
    gain: Keyframes = field(default_factory=lambda: constant(1.0))


@dataclass(frozen=True)
class SceneSpec:
    """A complete procedural scene.

    Attributes:
        name: preset name or a user's label.
        seed: seed the preset was built from (recorded, not used by the renderer).
        num_frames: length of the stream.
        fps: frames per second; frame i is at ``i / fps`` seconds.
        camera, room, lighting, objects: the content. Object ids must be unique.
    """

    name: str
    seed: int
    num_frames: int
    fps: float
    camera: CameraSpec
    room: RoomSpec
    lighting: Lighting
    objects: tuple[ObjectSpec, ...]

    def __post_init__(self) -> None:
        ids = [o.object_id for o in self.objects]
        if len(set(ids)) != len(ids):
            raise ValueError(f"object ids must be unique, got {ids}")
        if self.num_frames < 1 or self.fps <= 0:
            raise ValueError("a scene needs num_frames >= 1 and fps > 0")

    def time_of(self, index: int) -> float:
        return index / self.fps
