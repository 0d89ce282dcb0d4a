"""Memory Maze (Pasukonis et al., 2022) behind habitat-lab's observation and action names.

The agent rolls through a random maze (9x9 .. 15x15 cells of 2 m) holding targets of distinct colours;
the colour of the current target is shown (a border around the image, as the benchmark shows it, and
``target_color``); touching that target scores +1 and another target becomes the current one. An
episode has a fixed number of steps (9x9: 1,000 steps at 4 Hz) and no ``stop``. Published scores on
9x9: human 26.4, maximum (an oracle) 34.8.

Observations (habitat-lab's names and frames, as :mod:`~memstream.embodied.envs.miniworld_env`):
    rgb: uint8 (H, W, 3), Memory Maze's ``image`` (with the target-colour border, :func:`target_border_px`
    pixels wide; none below 64 px).
    depth: float32 (H, W, 1), metres along the optical axis of the same camera, clipped to
    ``max_depth_m`` (open sky reads ``max_depth_m``).
    gps: float32 (2,), ``[forward, right]`` metres of the camera from its first pose, in that pose's frame.
    compass: float32 (1,), radians in [-pi, pi], heading relative to the first pose, positive to the left.
    target_color: float32 (3,), RGB in [0, 1] of the current target (Memory Maze's ``target_color``).
    objectgoal: int64 (1,), index of that colour in :data:`TARGET_COLOUR_NAMES` (habitat's goal id).
    step: int, the index of the frame in the episode.

The layout and the targets' positions are not observations: :meth:`MemoryMazeEnv.goals_gps`,
:meth:`~MemoryMazeEnv.targets_gps` and :meth:`~MemoryMazeEnv.layout` expose them for scoring and the
oracle agent only.

Actions: habitat's names onto Memory Maze's six discrete actions (its ids 0..3 coincide with habitat's)::

    habitat name        Memory Maze id  Memory Maze action (its DiscreteActionSetWrapper)
    stop                0               noop: no force (the ball coasts; the episode does not end)
    move_forward        1               forward
    turn_left           2               left
    turn_right          3               right
    move_forward_left   4               forward + left (habitat's extend_action_space)
    move_forward_right  5               forward + right

The ball has momentum: at full speed a forward step covers ~0.5 m, a turn ~18 degrees.

Speed: loading Memory Maze replaces dm_control's ``TargetSphere._update_activation`` (a Python loop
over every contact after each of a step's 50 physics substeps, for every target: ~60 % of a step) by
the same test on the contact arrays (:func:`_update_activation`); rewards and frames are unchanged
(a test runs both on every step of an episode that scores), a step costs half the CPU.

Camera: :data:`FOV_DEG` square field of view at :data:`CAMERA_HEIGHT_M`, pitched down
:data:`CAMERA_PITCH_DEG` (read from the model; a test checks them). Headless rendering needs EGL
(``MUJOCO_GL=egl``, set here if unset; Mesa's ``libegl1 libegl-mesa0 libgl1-mesa-dri`` on a CPU machine).
"""

from __future__ import annotations

import functools
import io
import math
import os
import warnings
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from memstream.embodied.envs.gl import load_triton_first
from memstream.embodied.envs.miniworld_env import action_name as habitat_action_name
from memstream.streaming.configtypes import strict_config
from memstream.streaming.errors import MemstreamError

ACTIONS = ("stop", "move_forward", "turn_left", "turn_right", "move_forward_left", "move_forward_right")
#: Memory Maze's target palette, in its order (``memory_maze.maze.TARGET_COLORS``); 9x9 uses the first 3.
TARGET_COLOUR_NAMES = ("red", "green", "blue", "purple", "yellow", "salmon")
MAZE_SIZES = (9, 11, 13, 15)
TARGETS_PER_SIZE = {9: 3, 11: 4, 13: 5, 15: 6}  # memory_maze.tasks: one colour each, the palette's first
CAMERA = "walker/egocentric"
FOV_DEG = 80.0
CAMERA_HEIGHT_M = 0.9
CAMERA_PITCH_DEG = -5.74
CELL_M = 2.0  # Memory Maze's xy_scale: one maze cell is 2 m
INSTALL_FIX = "pip install 'memstream[maze]' (or: pip install memory-maze gym)"
EGL_FIX = (
    "Memory Maze renders headless through EGL: apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri, "
    "and run with MUJOCO_GL=egl (MUJOCO_GL=osmesa with libosmesa6 also works, slower)"
)


@strict_config
@dataclass(frozen=True)
class MemoryMazeConfig:
    """Settings of a Memory Maze episode.

    Attributes:
        maze_size: cells per side without the outer wall (9, 11, 13, 15); the task name sets it.
        image_size: pixels per side of rgb and depth (the benchmark's 64; below 64 the image has no
            target-colour border, :func:`target_border_px`).
        max_steps: end the episode after this many steps (None: the benchmark's 1,000 .. 4,000).
        max_depth_m: depth beyond this (the open sky) reads this.
    """

    maze_size: Literal[9, 11, 13, 15] = 9
    image_size: Annotated[int, Field(ge=16, le=512)] = 64
    max_steps: Annotated[int, Field(ge=1)] | None = None
    max_depth_m: Annotated[float, Field(gt=0)] = 30.0


@functools.cache
def load_memory_maze() -> Any:
    """Import ``memory_maze.tasks`` headless, or raise :class:`MemstreamError` naming the fix."""
    load_triton_first()  # before Mesa's LLVM (memstream.embodied.envs.gl)
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        with warnings.catch_warnings(), redirect_stderr(io.StringIO()), redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # gym 0.26 warns that it is unmaintained; memory_maze needs it
            from memory_maze import tasks
    except ModuleNotFoundError as error:
        raise MemstreamError(f"Memory Maze is not installed ({error.name} missing)", INSTALL_FIX) from None
    except ImportError as error:  # dm_control: "Cannot initialize a headless EGL display."
        raise MemstreamError(f"Memory Maze cannot open a headless OpenGL context: {error}", EGL_FIX) from None
    except RuntimeError as error:  # dm_control: an unknown MUJOCO_GL value
        raise MemstreamError(f"Memory Maze cannot choose a renderer: {error}", EGL_FIX) from None
    from dm_control.locomotion.props import target_sphere

    global _original_update_activation
    if target_sphere.TargetSphere._update_activation is not _update_activation:
        _original_update_activation = target_sphere.TargetSphere._update_activation  # kept for the test
        target_sphere.TargetSphere._update_activation = _update_activation
    return tasks


_original_update_activation: Any = None


def _update_activation(self: Any, physics: Any) -> None:
    """dm_control's ``TargetSphere._update_activation`` on the contact arrays instead of a Python loop
    over every contact: the same test (a contact names the target's geom, and one of the specific
    geoms if any), run after each of the 50 physics substeps of a Memory Maze step for every target;
    the loop took ~60 % of a step's CPU."""
    if self._activated:
        return
    contact = physics.data.contact
    geom1, geom2 = np.asarray(contact.geom1), np.asarray(contact.geom2)
    hit = (geom1 == self._geom_id) | (geom2 == self._geom_id)
    if self._specific_collision_geom_ids:
        specific = list(self._specific_collision_geom_ids)
        hit &= np.isin(geom1, specific) | np.isin(geom2, specific)
    if hit.any():
        self._activated = True
        physics.bind(self._material).rgba[-1] = 0


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


class MemoryMazeEnv:
    """A Habitat-style env (``reset`` / ``step`` / ``episode_over`` / ``get_metrics``) on Memory Maze.

    Example (needs ``memory-maze`` and EGL):
        >>> env = MemoryMazeEnv(MemoryMazeConfig(max_steps=3))
        >>> obs = env.reset(seed=0)
        >>> obs["rgb"].shape, obs["depth"].dtype, obs["objectgoal"].shape
        ((64, 64, 3), dtype('float32'), (1,))
        >>> while not env.episode_over:
        ...     obs = env.step("move_forward")
        >>> env.get_metrics()["steps"]
        3.0
    """

    #: what the navigation evaluation averages over episodes (see ``agents.evaluate``)
    summary_metrics = ("return", "targets_collected")

    def __init__(self, config: MemoryMazeConfig | None = None) -> None:
        self.config = config or MemoryMazeConfig()
        self._env: Any = None
        self.episode_over = True

    @property
    def video_extent_m(self) -> float:
        """Metres a side of ``nav-eval --videos``' top-down view, centred on the start: twice the
        maze's width with its outer wall (the default 16 m showed a fraction of a 22 m 9x9 maze)."""
        return 2.0 * (self.config.maze_size + 2) * CELL_M

    def require(self) -> None:
        """Load Memory Maze now (it is otherwise loaded by the first ``reset``); raises naming the fix."""
        load_memory_maze()

    # ---- episode ------------------------------------------------------------------------------
    def reset(self, seed: int) -> dict[str, Any]:
        """Build the maze of ``seed`` (the same maze, targets and start for the same seed)."""
        tasks = load_memory_maze()
        self.close()
        make = getattr(tasks, f"memory_maze_{self.config.maze_size}x{self.config.maze_size}")
        with redirect_stderr(io.StringIO()):  # absl warns about the walker's joints on every reset
            self._env = make(
                seed=seed, global_observables=True, camera_resolution=self.config.image_size,
                # below 64 px the border is 0 px wide and Memory Maze's wrapper, slicing ``img[:, -0:]``,
                # paints the whole image in the target colour: no border there, as its formula means
                target_color_in_image=target_border_px(self.config.image_size) > 0,
            )
            timestep = self._env.reset()
        self.seed = seed
        self._physics = self._env.physics
        self._camera_id = self._physics.model.name2id(CAMERA, "camera")
        self._origin, self._origin_yaw = self._camera_pose()
        self.total_reward, self.step_index, self.episode_over = 0.0, 0, False
        self._last = timestep.observation
        return self._observe(timestep.observation)

    def step(self, action: Any) -> dict[str, Any]:
        """One Memory Maze step (a quarter second) with a habitat action name or id."""
        if self.episode_over:
            raise MemstreamError("step() after the episode ended", "Call reset(seed) for a new episode")
        timestep = self._env.step(ACTIONS.index(action_name(action)))
        self.total_reward += float(timestep.reward or 0.0)
        self.step_index += 1
        limit = self.config.max_steps
        self.episode_over = bool(timestep.last()) or (limit is not None and self.step_index >= limit)
        self._last = timestep.observation
        return self._observe(timestep.observation)

    def get_metrics(self) -> dict[str, float]:
        """``return`` (targets collected, Memory Maze's episode return), ``targets_collected``, ``steps``."""
        return {
            "return": self.total_reward,
            "targets_collected": self.total_reward,
            "steps": float(self.step_index),
        }

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None

    # ---- scoring only (never observations) ----------------------------------------------------
    def targets_gps(self) -> np.ndarray:
        """float32 (n_targets, 2): every target's centre in the ``gps`` frame (index = colour index)."""
        centre = (np.array(self._last["maze_layout"].shape, dtype=np.float64)) / 2.0
        world = (np.asarray(self._last["targets_pos"], dtype=np.float64) - centre) * CELL_M
        return np.stack([self.to_gps(p) for p in world])

    def goals_gps(self) -> list[np.ndarray]:
        """The current target's centre in the ``gps`` frame (for scoring and the oracle agent)."""
        centre = (np.array(self._last["maze_layout"].shape, dtype=np.float64)) / 2.0
        return [self.to_gps((np.asarray(self._last["target_pos"], dtype=np.float64) - centre) * CELL_M)]

    def layout(self) -> np.ndarray:
        """uint8 (n, n): Memory Maze's ``maze_layout`` (1 free, 0 wall; row 0 at the bottom, +y up)."""
        return np.asarray(self._last["maze_layout"])

    # ---- frames -------------------------------------------------------------------------------
    def _camera_pose(self) -> tuple[np.ndarray, float]:
        """The camera's world (x, y) metres and yaw (radians, counter-clockwise from +x)."""
        data = self._physics.data
        look = -data.cam_xmat[self._camera_id].reshape(3, 3)[:, 2]  # MuJoCo cameras look along -z
        return np.array(data.cam_xpos[self._camera_id][:2], dtype=np.float64), math.atan2(look[1], look[0])

    def to_gps(self, world_xy: np.ndarray) -> np.ndarray:
        """float32 (2,): world ``(x, y)`` in the gps frame ``[forward, right]`` of the first pose."""
        yaw = self._origin_yaw
        delta = np.asarray(world_xy, dtype=np.float64) - self._origin
        forward, right = np.array([math.cos(yaw), math.sin(yaw)]), np.array([math.sin(yaw), -math.cos(yaw)])
        return np.array([delta @ forward, delta @ right], dtype=np.float32)

    def _observe(self, obs: dict[str, Any]) -> dict[str, Any]:
        size = self.config.image_size
        depth = self._physics.render(size, size, camera_id=self._camera_id, depth=True)
        position, yaw = self._camera_pose()
        colour = np.asarray(obs["target_color"], dtype=np.float32)
        return {
            "rgb": np.array(obs["image"], dtype=np.uint8, copy=True),  # the wrapper reuses its buffer
            "depth": np.minimum(depth, self.config.max_depth_m).astype(np.float32)[..., None],
            "gps": self.to_gps(position),
            "compass": np.array([_wrap(yaw - self._origin_yaw)], dtype=np.float32),
            "target_color": colour,
            "objectgoal": np.array([colour_index(colour)], dtype=np.int64),
            "step": self.step_index,
        }


def world_reach_m(maze_size: int) -> float:
    """Metres from any start to the farthest point of a ``maze_size`` maze: the diagonal of its
    ``maze_size + 2`` cells with the outer wall (9x9: 31.1 m, 15x15: 48.1 m). An agent's map centred
    on its start needs this much room on every side."""
    return (maze_size + 2) * CELL_M * math.sqrt(2.0)


def target_border_px(image_size: int) -> int:
    """Width in pixels of the target-colour border Memory Maze draws around an ``image_size`` image
    (its ``TargetColorAsBorderWrapper``: ``int(2 * sqrt(image_size // 64))``; 0 below 64 px, 2 at 64,
    4 at 256). Below 64 px this env draws none (see :meth:`MemoryMazeEnv.reset`)."""
    return int(2 * math.sqrt(image_size // 64))


def colour_index(target_color: np.ndarray) -> int:
    """Index in :data:`TARGET_COLOUR_NAMES` of Memory Maze's ``target_color`` (RGB in [0, 1])."""
    from memory_maze.maze import TARGET_COLORS

    distances = [float(np.abs(np.asarray(target_color) - c).sum()) for c in TARGET_COLORS]
    return int(np.argmin(distances))


def action_name(action: Any) -> str:
    """A habitat action as a name: ``"move_forward"``, id ``1``, or ``{"action": ...}`` (see the table)."""
    return habitat_action_name(action, ACTIONS)
