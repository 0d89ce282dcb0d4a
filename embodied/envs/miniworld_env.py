"""FindingDory-style episodes in MiniWorld houses, behind habitat-lab's observation and action names.

One episode has two phases. **History**: a scripted agent tours the house (a 360-degree look in every
room), then picks ``num_picks`` objects one after another and places each in another room; the agent
under test sees every frame (``act`` is called, its action ignored) with the action the script took
(``history_action``: a Habitat action, ``pick`` or ``place``), as FindingDory logs frames, poses and
actions. **Task**: the agent is moved to a random spot, ``instruction`` holds a templated
instruction (:mod:`~memstream.embodied.envs.findingdory`), and the agent's actions
(``stop``, ``move_forward``, ``turn_left``, ``turn_right``) drive it; ``stop`` near the current goal
counts it reached, elsewhere ends the episode (:class:`~memstream.embodied.envs.navmetrics.NavMetrics`).
SPL's ``shortest`` is the length of the shortest path from the task's start that stops where each goal
counts reached (``distance_to_goal < success_distance_m``), in order: the least
``geo(start, p_1) + geo(p_1, p_2) + ...`` over such stops, measured on a :data:`GRID_M` grid of where
MiniWorld lets the agent's centre be (:data:`AGENT_RADIUS_M` from walls and
``AGENT_RADIUS_M + SOLID_RADIUS_M`` from objects' centres;
:func:`~memstream.embodied.envs.goaldistance.shortest_successful_m`); inf where that grid has no such
path (SPL is then ``success``).

Observations (habitat-lab's names and frames):
    rgb: uint8 (H, W, 3). depth: float32 (H, W, 1), metres along the optical axis (not normalised).
    gps: float32 (2,), ``[forward, right]`` metres from the episode's first pose in that pose's frame
    (habitat's ``[-z, x]``). compass: float32 (1,), radians in [-pi, pi], heading relative to the first
    pose, positive to the left. phase: "history" | "task". history_action: str ("" in the task phase).
    instruction: str ("" in the history phase). step: int, index of the frame in its phase.

Camera: height :data:`CAMERA_HEIGHT_M`, square images with :data:`FOV_DEG` vertical and horizontal
field of view, level. Headless rendering needs Mesa's EGL (``PYGLET_HEADLESS=True``,
``PYOPENGL_PLATFORM=egl``; set here if unset).
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from memstream.embodied.envs.findingdory import TEMPLATES, Goal, HistoryFacts, Template, instantiate
from memstream.embodied.envs.gl import load_triton_first
from memstream.embodied.envs.goaldistance import GoalDistance, goal_distance, shortest_successful_m
from memstream.embodied.envs.house import (
    OBJECT_RADIUS_M,
    HouseLayout,
    HouseObject,
    free_grid,
    make_layout,
    spaced_point,
)
from memstream.embodied.envs.navgrid import GridSpec, descend, distance_field, nearest_finite
from memstream.embodied.envs.navmetrics import NavMetrics
from memstream.streaming.configtypes import strict_config
from memstream.streaming.errors import MemstreamError

ACTIONS = ("stop", "move_forward", "turn_left", "turn_right")  # habitat's ids 0..3
CAMERA_HEIGHT_M = 1.5
FOV_DEG = 60.0
AGENT_RADIUS_M = 0.4  # MiniWorld's agent radius
SOLID_RADIUS_M = 0.425  # MiniWorld's collision radius of a size-0.6 box (0.424) and ball (0.425)
CLEARANCE_M = 0.45  # the scorer's agent radius plus a margin
SCRIPT_CLEARANCE_M = 0.55  # the scripted agent keeps farther from walls: its 30-degree turns drift
GRID_M = 0.1
START_DRAWS = 20  # task starts drawn until one reaches every goal (else the last is kept: SPL is then success)
INSTALL_FIX = "pip install 'memstream[sim]' (or: pip install miniworld)"
EGL_FIX = (
    "MiniWorld renders headless through EGL: apt-get install libegl1 libgl1-mesa-dri, and run with "
    "PYGLET_HEADLESS=True PYOPENGL_PLATFORM=egl"
)


@strict_config
@dataclass(frozen=True)
class FindingDoryConfig:
    """Settings of the FindingDory-style MiniWorld task.

    Attributes:
        image_size: pixels per side of rgb and depth. num_objects: objects in a house (distinct colours).
        num_picks: objects picked and placed in the history. forward_step_m / turn_deg: habitat's
        ``forward_step_size`` and ``turn_angle``. success_distance_m: habitat's ``success_distance``
        (metres from the goal's centre; an object's centre is ~0.9 m from where the agent can stand).
        max_task_steps: the task phase's time limit, actions. templates: names to draw from (empty: all).
    """

    image_size: Annotated[int, Field(ge=32, le=512)] = 128
    num_objects: Annotated[int, Field(ge=3, le=5)] = 5
    num_picks: Annotated[int, Field(ge=2, le=3)] = 3
    forward_step_m: Annotated[float, Field(gt=0, le=1)] = 0.25
    turn_deg: Annotated[float, Field(gt=0, le=90)] = 30.0
    success_distance_m: Annotated[float, Field(gt=0)] = 1.2
    max_task_steps: Annotated[int, Field(ge=1)] = 500
    templates: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in self.templates:  # here, not in each episode's task phase: lists the known names
            TEMPLATES.get(name)


def load_miniworld() -> Any:
    """Import MiniWorld headless, or raise :class:`MemstreamError` naming the fix."""
    load_triton_first()  # before Mesa's LLVM (memstream.embodied.envs.gl)
    os.environ.setdefault("PYGLET_HEADLESS", "True")
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    try:
        import miniworld.miniworld as mw
    except ModuleNotFoundError as error:
        raise MemstreamError(f"MiniWorld is not installed ({error.name} missing)", INSTALL_FIX) from None
    except Exception as error:  # noqa: BLE001 - pyglet raises its own exceptions when EGL is missing
        raise MemstreamError(f"MiniWorld cannot open a headless OpenGL context: {error}", EGL_FIX) from None
    return mw


@functools.cache
def _house_world_class() -> type:
    mw = load_miniworld()
    from miniworld.entity import Ball, Box

    class HouseWorld(mw.MiniWorldEnv):
        """A MiniWorld world built from a :class:`HouseLayout` (set ``layout`` before ``reset``)."""

        layout: HouseLayout

        def __init__(self, layout: HouseLayout, size: int) -> None:
            self.layout = layout
            super().__init__(
                max_episode_steps=10**9, obs_width=size, obs_height=size, window_width=64, window_height=64
            )

        def _gen_world(self) -> None:
            rooms = [
                self.add_rect_room(min_x=r[0], max_x=r[1], min_z=r[2], max_z=r[3]) for r in self.layout.rooms
            ]
            for door in self.layout.doors:
                span = (
                    {"min_z": door.lo, "max_z": door.hi}
                    if door.axis == 0
                    else {"min_x": door.lo, "max_x": door.hi}
                )
                self.connect_rooms(rooms[door.a], rooms[door.b], max_y=2.2, **span)
            self.objects = []
            for obj in self.layout.objects:
                ent = (
                    Box(color=obj.colour, size=0.6)
                    if obj.shape == "box"
                    else Ball(color=obj.colour, size=0.6)
                )
                self.objects.append(
                    self.place_entity(ent, pos=np.array([obj.xz[0], 0.0, obj.xz[1]]), dir=0.0)
                )
            self.place_agent(
                pos=np.array([self.layout.start_xz[0], 0.0, self.layout.start_xz[1]]),
                dir=self.layout.start_dir,
            )

    return HouseWorld


def _heading_to(frm: np.ndarray, to: np.ndarray) -> float:
    """MiniWorld's ``dir`` (radians) that faces from ``frm`` to ``to`` (x, z): dir_vec = (cos, -sin)."""
    return math.atan2(-(to[1] - frm[1]), to[0] - frm[0])


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


class MiniWorldFrames:
    """What the MiniWorld envs share: closing the world, the agent's position, habitat's gps frame of
    the first pose (``_origin``, heading ``_origin_dir``) and an RGB-D frame (depth in metres)."""

    _world: Any = None
    _origin: np.ndarray
    _origin_dir: float = 0.0

    def close(self) -> None:
        if self._world is not None:
            self._world.close()
            self._world = None

    def _xz(self) -> np.ndarray:
        pos = self._world.agent.pos
        return np.array([pos[0], pos[2]], dtype=np.float64)

    def to_gps(self, xz: np.ndarray) -> np.ndarray:
        """float32 (2,): world ``xz`` in the gps frame ``[forward, right]`` of the first pose."""
        d = self._origin_dir
        delta = np.asarray(xz, dtype=np.float64) - self._origin
        forward, right = np.array([math.cos(d), -math.sin(d)]), np.array([math.sin(d), math.cos(d)])
        return np.array([delta @ forward, delta @ right], dtype=np.float32)

    def _rgbd(self) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (H, W, 3) and float32 (H, W, 1) metres, rendered from the agent's camera."""
        rgb = self._world.render_obs()
        depth = self._world.obs_fb.get_depth_map(0.04, 100.0)
        depth = depth.astype(np.float32).reshape(rgb.shape[0], rgb.shape[1], 1)
        return np.ascontiguousarray(rgb, dtype=np.uint8), depth


class FindingDoryEnv(MiniWorldFrames):
    """A Habitat-style env (``reset`` / ``step`` / ``episode_over`` / ``get_metrics``) on MiniWorld.

    Example (needs ``miniworld`` and EGL):
        >>> env = FindingDoryEnv(FindingDoryConfig(image_size=64))
        >>> obs = env.reset(seed=0)
        >>> while obs["phase"] == "history":
        ...     obs = env.step("stop")              # ignored: the script acts in the history
        >>> obs["instruction"] != "", obs["depth"].shape
        (True, (64, 64, 1))
    """

    def __init__(self, config: FindingDoryConfig | None = None) -> None:
        self.config = config or FindingDoryConfig()
        self._world: Any = None

    def require(self) -> None:
        """Load MiniWorld now (it is otherwise loaded by the first ``reset``); raises naming the fix."""
        _house_world_class()

    # ---- episode ------------------------------------------------------------------------------
    def reset(self, seed: int) -> dict[str, Any]:
        """Build the house of ``seed`` and return the first history observation."""
        self.seed = seed
        self.rng = np.random.default_rng((seed, 0xD0))
        self.layout = make_layout(self.rng, num_objects=self.config.num_objects)
        if self._world is None:
            with contextlib.redirect_stdout(io.StringIO()):  # MiniWorld prints its framebuffer fallback
                self._world = _house_world_class()(self.layout, self.config.image_size)
        else:
            self._world.layout = self.layout
        self._world.reset(seed=seed)
        agent = self._world.agent
        self._origin = np.array([agent.pos[0], agent.pos[2]])
        self._origin_dir = float(agent.dir)
        self.phase, self.step_index, self.episode_over = "history", 0, False
        self.history_actions: list[str] = []
        self.picked: list[int] = []
        self.pick_xz: list[tuple[float, float]] = []
        self._hidden: set[int] = set()
        self._script: Iterator[str] = self._history_script()
        self.template: Template | None = None
        self.start_draws = 0  # task starts drawn (set in the task phase): 1 unless the first could not reach the goals
        self.instruction, self.goals = "", []
        self.metrics: NavMetrics | None = None
        return self._observe("")

    def step(self, action: Any) -> dict[str, Any]:
        """Advance one frame; in the history phase ``action`` is ignored (the script acts)."""
        if self.episode_over:
            raise MemstreamError("step() after the episode ended", "Call reset(seed) for a new episode")
        if self.phase == "history":
            taken = next(self._script, None)
            if taken is None:
                return self._start_task()
            self._apply(taken)
            self.history_actions.append(taken)
            self.step_index += 1
            return self._observe(taken)
        name = action_name(action)
        assert self.metrics is not None
        if name == "stop":
            self.metrics.stop()
        else:
            self._apply(name)
            self.metrics.update(self._xz())
        self.step_index += 1
        if self.metrics.done or self.step_index >= self.config.max_task_steps:
            self.episode_over = True
        return self._observe("")

    def get_metrics(self) -> dict[str, float]:
        """habitat's ``distance_to_goal``, ``success``, ``spl`` (see :class:`NavMetrics`),
        ``goals_reached``, ``path_length`` and ``shortest_path_length`` (SPL's ``shortest``: see the
        module docstring), metres."""
        if self.metrics is None:
            raise MemstreamError("no metrics before the task phase", "Step through the history first")
        return self.metrics.metrics()

    def goals_gps(self) -> list[np.ndarray]:
        """The ground-truth goals, float (2,) each in the ``gps`` frame (for scoring and the oracle agent)."""
        return [self.to_gps(np.asarray(g.xz)) for g in self.goals]

    # ---- frames -------------------------------------------------------------------------------
    def _observe(self, history_action: str) -> dict[str, Any]:
        world = self._world
        rgb, depth = self._rgbd()
        return {
            "rgb": rgb,
            "depth": depth,
            "gps": self.to_gps(self._xz()),
            "compass": np.array([_wrap(world.agent.dir - self._origin_dir)], dtype=np.float32),
            "phase": self.phase,
            "history_action": history_action,
            "instruction": self.instruction,
            "step": self.step_index,
        }

    def _apply(self, name: str) -> None:
        world = self._world
        if name == "move_forward":
            world.move_agent(self.config.forward_step_m, 0.0)
        elif name in ("turn_left", "turn_right"):
            world.turn_agent(self.config.turn_deg if name == "turn_left" else -self.config.turn_deg)
        elif name == "pick":
            index = self._pick_target
            self.picked.append(index)
            self.pick_xz.append(self._object_xz(index))
            self._hidden.add(index)
            world.entities.remove(world.objects[index])
        elif name == "place":
            index = self.picked[-1]
            ent, agent = world.objects[index], world.agent
            ent.pos = agent.pos + agent.dir_vec * (AGENT_RADIUS_M + 0.55)
            ent.pos[1] = 0.0
            world.entities.append(ent)
            self._hidden.discard(index)

    def _object_xz(self, index: int) -> tuple[float, float]:
        pos = self._world.objects[index].pos
        return float(pos[0]), float(pos[2])

    def current_layout(self) -> HouseLayout:
        """The house with each object where it stands now (a carried object where it was picked)."""
        objects = tuple(
            HouseObject(o.colour, o.shape, self._object_xz(i)) for i, o in enumerate(self.layout.objects)
        )
        return self.layout.with_objects(objects)

    def _grid(
        self, exclude: int = -1, clearance_m: float = CLEARANCE_M, blocker_radius_m: float = OBJECT_RADIUS_M
    ) -> tuple[GridSpec, np.ndarray]:
        blockers = [
            self._object_xz(i)
            for i in range(len(self.layout.objects))
            if i != exclude and i not in self._hidden
        ]
        centres = np.array(blockers).reshape(-1, 2)
        return free_grid(self.layout, clearance_m, GRID_M, centres, blocker_radius_m=blocker_radius_m)

    # ---- the scripted history -----------------------------------------------------------------
    def _history_script(self) -> Iterator[str]:
        start = self._xz()
        rooms = self.layout.rooms
        here = self.layout.room_of(start)
        order = [here] + sorted(
            set(range(len(rooms))) - {here},
            key=lambda r: np.hypot(rooms[r, 0] - rooms[here, 0], rooms[r, 2] - rooms[here, 2]),
        )
        for room in order:  # the tour: a full look around in every room
            centre = np.array([(rooms[room, 0] + rooms[room, 1]) / 2, (rooms[room, 2] + rooms[room, 3]) / 2])
            yield from self._go_to(centre, 0.6)
            yield from ["turn_left"] * round(360 / self.config.turn_deg)
        for index in (int(i) for i in self.rng.permutation(len(self.layout.objects))):
            if len(self.picked) == self.config.num_picks:
                break
            target = np.asarray(self._object_xz(index))
            yield from self._go_to(target, 1.2)
            if np.linalg.norm(self._xz() - target) > 1.3:
                continue  # could not get there: pick another object
            yield from self._face(target)
            self._pick_target = index
            yield "pick"
            avoid = [self._object_xz(i) for i in range(len(self.layout.objects)) if i not in self._hidden]
            avoid += self.pick_xz + [tuple(start)]
            others = [r for r in range(len(rooms)) if r != self.layout.room_of(target)]
            spot = spaced_point(
                self.rng, self.layout, np.array(avoid), [int(r) for r in self.rng.permutation(others)]
            )
            yield from self._go_to(spot, 1.0, drop_at=True)
            yield from self._face(spot)
            yield "place"

    def _go_to(
        self, target: np.ndarray, radius_m: float, exclude: int = -1, drop_at: bool = False
    ) -> Iterator[str]:
        """Habitat actions that bring the agent within ``radius_m`` of ``target`` along the shortest path."""
        grid, free = self._grid(exclude, SCRIPT_CLEARANCE_M)
        centres = grid.to_xy(np.argwhere(free))
        near = np.argwhere(free)[np.linalg.norm(centres - target, axis=1) <= radius_m]
        if drop_at:  # standing ~0.95 m from the spot, facing it
            keep = np.linalg.norm(grid.to_xy(near) - target, axis=1) >= 0.7
            near = near[keep] if keep.any() else near
        sources = [tuple(c) for c in near]
        field = distance_field(free, sources, GRID_M)
        for _ in range(300):
            distance = float(np.linalg.norm(self._xz() - target))
            if distance <= radius_m and (not drop_at or distance >= 0.7):
                return
            cell = tuple(grid.to_cell(self._xz()))
            if grid.inside(np.asarray(cell)) and np.isfinite(field[cell]):
                if field[cell] == 0.0:
                    return
                waypoint = grid.to_xy(np.asarray(descend(field, cell, max_cells=4)[-1]))
            else:  # too near a wall for the planner: step back onto its grid first
                cell = nearest_finite(field, cell)
                if cell is None:
                    return
                waypoint = grid.to_xy(np.asarray(cell))
            turn = _wrap(_heading_to(self._xz(), waypoint) - self._world.agent.dir)
            if abs(turn) > math.radians(self.config.turn_deg) / 2:
                yield "turn_left" if turn > 0 else "turn_right"
                continue
            # like FindingDory's waypoint controller, the script steers exactly along its path: a
            # forward step corrects the heading by up to half a turn (the compass shows it)
            self._world.agent.dir += turn
            before = self._xz()
            yield "move_forward"
            if np.allclose(before, self._xz()):  # cut a door jamb: a waypoint step onto the path, as
                free_cells = np.argwhere(np.isfinite(field))  # FindingDory's base_velocity teleports
                nearest = free_cells[np.argmin(np.linalg.norm(grid.to_xy(free_cells) - before, axis=1))]
                spot = grid.to_xy(nearest)
                self._world.agent.pos = np.array([spot[0], 0.0, spot[1]])
                yield "move_forward"

    def _face(self, target: np.ndarray) -> Iterator[str]:
        for _ in range(12):
            turn = _wrap(_heading_to(self._xz(), target) - self._world.agent.dir)
            if abs(turn) <= math.radians(self.config.turn_deg) / 2:
                return
            yield "turn_left" if turn > 0 else "turn_right"

    # ---- the task -----------------------------------------------------------------------------
    def _start_task(self) -> dict[str, Any]:
        facts = HistoryFacts(
            self.current_layout(),
            tuple(self.picked),
            tuple(self.pick_xz),
            (float(self._origin[0]), float(self._origin[1])),
        )
        names = list(self.config.templates) or None
        self.template, self.instruction, self.goals = instantiate(facts, self.rng, names)
        fields = [self._goal_field(goal) for goal in self.goals]
        goal_set = np.array([g.xz for g in self.goals])
        grid, free = self._grid()
        cells = np.argwhere(free)
        far = cells[
            np.min(np.linalg.norm(grid.to_xy(cells)[:, None] - goal_set[None], axis=2), axis=1) >= 2.5
        ]
        # SPL's shortest: the shortest path that stops within success_distance_m of each goal in turn,
        # where MiniWorld lets the agent walk (the scorer's grid keeps a margin that can close a doorway)
        walk_grid, walk_free = self._grid(clearance_m=AGENT_RADIUS_M, blocker_radius_m=SOLID_RADIUS_M)
        success_m = self.config.success_distance_m
        # a start from which the goals can be reached in turn, as habitat's datasets keep only navigable
        # episodes: an object beside a doorway can cut a room off (7 of seeds 0-199, which every agent
        # failed); the first draw is the one earlier versions made, so the other episodes are unchanged
        for self.start_draws in range(1, START_DRAWS + 1):  # kept: rescoring tells redrawn episodes by it
            spot = grid.to_xy(far[int(self.rng.integers(len(far)))])
            shortest = shortest_successful_m(walk_grid, walk_free, spot, fields, success_m)
            if math.isfinite(shortest):
                break
        self._world.agent.pos = np.array([spot[0], 0.0, spot[1]])
        self._world.agent.dir = float(self.rng.uniform(-math.pi, math.pi))
        self.metrics = NavMetrics(fields, success_m, shortest_m=shortest)
        self.metrics.reset(self._xz())
        self.phase, self.step_index = "task", 0
        return self._observe("")

    def _goal_field(self, goal: Goal) -> GoalDistance:
        grid, free = self._grid(exclude=goal.object_index)
        # an object goal: within 1 m of its centre, then straight; a place (no object): the cell itself
        return goal_distance(grid, free, np.asarray(goal.xz), ring_m=1.0 if goal.object_index >= 0 else None)


def action_name(action: Any, actions: tuple[str, ...] = ACTIONS) -> str:
    """A Habitat action as a name from ``actions``: ``"move_forward"``, id ``1``, or ``{"action": ...}``."""
    if isinstance(action, dict):
        action = action.get("action")
    if isinstance(action, (int, np.integer)) and 0 <= int(action) < len(actions):
        return actions[int(action)]
    if isinstance(action, str) and action in actions:
        return action
    raise MemstreamError(f"unknown action {action!r}",
                         f"Return one of {', '.join(actions)} (or ids 0-{len(actions) - 1})")
