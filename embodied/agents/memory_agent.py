"""Modular navigation agents with habitat's contract: ``reset()``, ``act(observations) -> action name``.

:class:`MapMemoryAgent` runs on the project's own memories. Every frame it updates

* the **tracking memory** (:class:`~memstream.embodied.agents.object_tracks.ObjectTracks`: a colour
  detector prompts the classical SAMURAI tracker; object ids persist over the whole episode);
* the **3D memory** (:class:`~memstream.embodied.map3d.DualMemory3D`, Mem4D's split): depth + the
  pose from ``gps``/``compass`` (:func:`~memstream.embodied.agents.memory_map.camera_pose`), the
  tracked objects' pixels kept out of the static TSDF and stored per id in the dynamics memory;
* an **episodic log** of its interactions (:class:`Interaction`: ``pick`` / ``place``, the object's
  id and label, the frame and the world position), keyed by the tracking memory's ids.

In the task phase it resolves the instruction from that memory
(:func:`~memstream.embodied.agents.instructions.resolve`: object positions from the dynamics memory,
rooms from the static map's walls), plans on the 3D memory's top-down occupancy grid
(:class:`~memstream.embodied.agents.memory_map.MemoryOccupancy`, Dijkstra) and walks to each goal in
turn, calling ``stop`` at each; it explores frontiers of that grid when it has no goal.

The baselines differ in one thing each (``mode``):

* ``memory``: as above.
* ``wiped``: every memory is forgotten when the task begins; it maps and searches (frontiers), goes to
  a named object once it sees it, and otherwise picks among the objects it has found at random.
* ``retrieval``: keeps the map (to navigate) but chooses goals among the history's keyframes (the
  poses of its pick and place frames, and the start) at random, as a frame-retrieval chooser does
  without understanding the instruction.
* ``oracle``: the ground-truth goals come from ``goal_oracle()``.

:attr:`MapMemoryAgent.chosen_goals` holds the goals it chose (map metres), for high-level success.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from memstream.embodied.agents.instructions import EpisodicMemory, goal_count, named_colour, resolve
from memstream.embodied.agents.maze_agent import grid_distance_field
from memstream.embodied.agents.memory_map import MemoryOccupancy, camera_pose, pinhole
from memstream.embodied.agents.navigator import Navigator
from memstream.embodied.agents.object_tracks import ObjectTracks, box_of
from memstream.embodied.envs.miniworld_env import CAMERA_HEIGHT_M, FOV_DEG
from memstream.embodied.map3d.memory import DualMemory3D, Map3DConfig
from memstream.embodied.map3d.psm import PSMConfig
from memstream.embodied.map3d.tdm import TDMConfig
from memstream.streaming.errors import MemstreamError
from memstream.streaming.types import Frame
from memstream.tracking.types import TrackOutput, TrackState

AgentMode = Literal["memory", "wiped", "retrieval", "oracle"]
AGENT_MODES: tuple[str, ...] = ("memory", "wiped", "retrieval", "oracle")
REQUIRED = ("rgb", "depth", "gps", "compass")
REACH_M = 0.95  # where the history's pick and place happen: this far in front of the agent
STUCK_STEPS = 4  # forward steps that did not move the agent before it backs off (see MapMemoryAgent._unstick)
CARRY_HALF_M = 0.45  # the carried object lies within this of REACH_M ahead, along and across the view
STILL_M = 0.5  # sightings whose centroids lie this near the latest one: the object has not moved since


def navigation_map3d_config() -> Map3DConfig:
    """The 3D memory as a navigation agent runs it: 20 cm voxels (the planner's cells), poses given by
    the simulator, dynamic pixels from the tracking memory (no ray-cast check: every object is
    tracked), and a dynamics memory that keeps each object's latest sighting for the whole episode."""
    return Map3DConfig(
        psm=PSMConfig(voxel_m=0.2, depth_max_m=8.0, block_budget=4000),
        tdm=TDMConfig(window_frames=8, max_age_s=1e9, max_points_per_observation=256, voxel_m=0.05,
                      max_extrapolation_s=0.0),
        dynamic_masks=("tracking",),
        pose="given",
    )


@dataclass(frozen=True)
class Interaction:
    """One entry of the episodic log: what the agent did to which object, when and where.

    Attributes:
        kind: ``pick`` or ``place``. object_id: the tracking memory's id. label: its detector label
        (colour). frame: the agent's frame counter (its clock). position: ``(2,)`` world metres
        (gps frame): where the object was picked from, or where it was put down.
    """

    kind: str
    object_id: int
    label: str
    frame: int
    position: np.ndarray


class MapMemoryAgent:
    """A memory agent on the project's tracking and 3D memories, or one of its baselines (module doc).

    Args:
        mode: ``memory``, ``wiped``, ``retrieval`` or ``oracle``.
        goal_oracle: for ``oracle``: returns the true goals (map metres) once the task begins.
        seed: the random choices of ``wiped`` and ``retrieval``.
        stop_radius_m: how near a goal the agent calls ``stop``.
        map3d_config: the 3D memory's settings (:func:`navigation_map3d_config` when None).
    """

    def __init__(
        self,
        mode: AgentMode = "memory",
        goal_oracle: Callable[[], list[np.ndarray]] | None = None,
        seed: int = 0,
        stop_radius_m: float = 1.0,
        fov_deg: float = FOV_DEG,
        camera_height_m: float = CAMERA_HEIGHT_M,
        turn_deg: float = 30.0,
        search_steps: int = 120,
        map3d_config: Map3DConfig | None = None,
    ) -> None:
        if mode not in AGENT_MODES:
            raise MemstreamError(f"unknown agent mode {mode!r}", f"Choose one of {', '.join(AGENT_MODES)}")
        if mode == "oracle" and goal_oracle is None:
            raise MemstreamError("the oracle agent needs goal_oracle", "Pass goal_oracle=env.goals_gps")
        self.mode, self.goal_oracle, self.seed = mode, goal_oracle, seed
        self.stop_radius_m, self.fov_deg, self.camera_height_m = stop_radius_m, fov_deg, camera_height_m
        self.search_steps = search_steps
        self.map3d_config = map3d_config or navigation_map3d_config()
        self.tracks = ObjectTracks()
        self.map3d = DualMemory3D(self.map3d_config)
        self.occupancy = MemoryOccupancy(self.map3d, cell_m=self.map3d_config.psm.voxel_m, still_m=STILL_M)
        self.navigator = Navigator(self.occupancy, turn_deg=turn_deg)
        self.navigator.field_fn = grid_distance_field  # the reference field, by scipy's C Dijkstra (tested equal)
        self.episodes = 0
        self.reset()

    def _forget(self) -> None:
        """Wipe the tracking memory, the 3D memory and the log."""
        self.tracks.reset()
        if self.map3d.psm.frames_fused or len(self.map3d.tdm):
            self.map3d = DualMemory3D(self.map3d_config)
        self.occupancy.attach(self.map3d)
        self.navigator.reset()
        self.log: list[Interaction] = []
        self.carrying: int | None = None

    def reset(self) -> None:
        """Forget everything: a new episode begins."""
        self._forget()
        self.rng = np.random.default_rng((self.seed, self.episodes))
        self.episodes += 1
        self.frame = 0
        self.task_started = False
        self.task_steps = 0
        self.chosen_goals: list[np.ndarray] | None = None
        self.goal_index = 0
        self._goal_objects: list[np.ndarray] = []
        self._last_move: tuple[np.ndarray, str | None] | None = None
        self._stuck = 0
        self._recovery: list[str] = []
        self.recoveries = 0
        self._best = (math.inf, 0)  # (nearest distance to the current goal so far, task step it was reached)

    # ---- memory -------------------------------------------------------------------------------
    def _perceive(self, obs: dict[str, Any]) -> tuple[np.ndarray, float]:
        missing = [key for key in REQUIRED if key not in obs]
        if missing:
            raise MemstreamError(
                f"the map memory agent needs observations {', '.join(missing)}",
                "Give it an env with an RGB-D camera and a GPS+compass sensor (rgb, depth, "
                "gps, compass), e.g. --env miniworld",
            )
        gps = np.asarray(obs["gps"], dtype=np.float64).reshape(2)
        compass = float(np.asarray(obs["compass"]).reshape(-1)[0])
        rgb = np.asarray(obs["rgb"])
        depth = np.asarray(obs["depth"], dtype=np.float32).reshape(rgb.shape[:2])
        frame = Frame(
            self.frame, float(self.frame), rgb, depth, pinhole(rgb.shape[1], self.fov_deg),
            camera_pose(gps, compass, self.camera_height_m),
        )
        tracking = self._with_carried(self.tracks.update(frame), depth)
        self.map3d.update(frame, {"tracking": tracking})
        self.frame += 1
        return gps, compass

    def _with_carried(self, tracking: TrackOutput, depth: np.ndarray) -> TrackOutput:
        """Add the carried object to the frame's tracked objects: what depth sees where the simulator
        holds it (``REACH_M`` ahead, within ``CARRY_HALF_M`` along and across the view, below the
        camera), low in the view, where its colour rarely shows; left out, it would be fused into the
        static map as a wall that follows the agent."""
        if self.carrying is None:
            return tracking
        rows, cols = np.mgrid[0 : depth.shape[0], 0 : depth.shape[1]].astype(np.float32)
        focal = (depth.shape[1] / 2) / math.tan(math.radians(self.fov_deg) / 2)
        centre = depth.shape[0] / 2 - 0.5
        height = self.camera_height_m - (rows - centre) / focal * depth
        across = (cols - centre) / focal * depth
        held = (
            (depth > 0)
            & (np.abs(depth - REACH_M) <= CARRY_HALF_M)
            & (np.abs(across) <= CARRY_HALF_M)
            & (height < self.camera_height_m - 0.1)
        )
        previous = tracking.get(self.carrying)
        if previous is not None and previous.mask is not None:
            held = held | previous.mask
        if not held.any():
            return tracking
        state = TrackState(self.carrying, box_of(held), held, 1.0, 1.0, float("nan"), False)
        others = tuple(s for s in tracking.states if s.object_id != self.carrying)
        return TrackOutput(tracking.frame_index, tuple(sorted(others + (state,), key=lambda s: s.object_id)),
                           tracking.names)

    def object_position(self, object_id: int) -> np.ndarray | None:
        """World ``(2,)`` position of an object from the dynamics memory: the median of its points
        above the floor over its sightings since it last moved (centroids within ``STILL_M`` of the
        latest; the camera sees its top and its near faces, whose median lies near its centre); where
        the log says it was put down if that came after its last sighting; None if never seen or carried."""
        sightings = self.map3d.tdm.observations(object_id)
        placed = [e for e in self.log if e.object_id == object_id and e.kind == "place"]
        seen_frame = sightings[-1].frame_index if sightings else -1
        if placed and placed[-1].frame >= seen_frame:
            return placed[-1].position
        if not sightings or object_id == self.carrying:
            return None
        still = [o for o in sightings if np.linalg.norm(o.centroid - sightings[-1].centroid) <= STILL_M]
        points = np.concatenate([o.points for o in still])
        above = points[-points[:, 2] > 0.1]  # the world is (forward, right, down): not the floor around it
        return np.median((above if len(above) else points)[:, :2], axis=0).astype(np.float64)

    def objects(self) -> dict[int, np.ndarray]:
        """id -> position of every object the memories place (the carried one excepted)."""
        out = {}
        for object_id in self.tracks.label_of:
            position = self.object_position(object_id)
            if position is not None:
                out[object_id] = position
        return out

    @property
    def picks(self) -> list[tuple[str, np.ndarray]]:
        """(label, position) of each pick, in order (from the episodic log)."""
        return [(e.label, e.position) for e in self.log if e.kind == "pick"]

    @property
    def places(self) -> list[np.ndarray]:
        return [e.position for e in self.log if e.kind == "place"]

    def _log_interaction(self, action: str, gps: np.ndarray, compass: float) -> None:
        ahead = gps + REACH_M * np.array([math.cos(compass), -math.sin(compass)])
        frame = self.frame - 1  # the frame that showed it
        if action == "pick":
            picked = {e.object_id for e in self.log if e.kind == "pick"}
            known = {i: p for i, p in self.objects().items() if i not in picked}
            if not known:
                return
            object_id = min(known, key=lambda i: float(np.linalg.norm(known[i] - ahead)))
            self.log.append(Interaction("pick", object_id, self.tracks.label_of[object_id], frame, known[object_id].copy()))
            self.carrying = object_id
        elif action == "place" and self.carrying is not None:
            self.log.append(Interaction("place", self.carrying, self.tracks.label_of[self.carrying], frame, ahead))
            self.carrying = None

    def episodic_memory(self) -> EpisodicMemory:
        """What the instruction resolver reads: picks and objects by label, rooms from the map's walls."""
        objects = {self.tracks.label_of[i]: p for i, p in self.objects().items()}
        return EpisodicMemory(picks=self.picks, objects=objects, same_room=self.occupancy.same_room)

    # ---- the task -----------------------------------------------------------------------------
    def _begin_task(self) -> None:
        self.task_started = True
        if self.mode == "wiped":
            self._forget()

    def _choose(self, instruction: str) -> list[np.ndarray] | None:
        if self.mode == "oracle":
            assert self.goal_oracle is not None
            return [np.asarray(g, dtype=np.float64) for g in self.goal_oracle()]
        if self.mode == "memory":
            return resolve(instruction, self.episodic_memory())
        count = goal_count(instruction)
        if self.mode == "retrieval":
            keyframes = [p for _, p in self.picks] + list(self.places) + [np.zeros(2)]
            picks = self.rng.choice(len(keyframes), size=min(count, len(keyframes)), replace=False)
            return [keyframes[int(i)] for i in picks]
        colour = named_colour(instruction)  # wiped: search
        objects = {self.tracks.label_of[i]: p for i, p in self.objects().items()}
        if colour is not None and colour in objects and count == 1:
            return [objects[colour]]
        if self.task_steps < self.search_steps:
            return None
        seen = list(objects.values())
        if not seen:
            return [self.occupancy.grid.to_xy(self.occupancy.grid.to_cell(np.zeros(2)))]
        picks = self.rng.choice(len(seen), size=min(count, len(seen)), replace=False)
        return [seen[int(i)] for i in picks]

    def _stop_radius(self, goal: np.ndarray) -> float:
        """``stop_radius_m`` at an object the memory knows of; half of it at an empty spot (it gets closer)."""
        occupied = any(np.linalg.norm(p - goal) < 0.7 for p in self._goal_objects)
        return self.stop_radius_m if occupied else self.stop_radius_m / 2

    def _unstick(self, gps: np.ndarray) -> str | None:
        """A recovery manoeuvre once ``STUCK_STEPS`` forward steps in a row have not moved the agent
        (pressed against something the camera cannot see and the plan keeps squeezing past): a
        turn of two steps (60 degrees), alternately left and right, and two steps forward; None while
        not stuck."""
        if self._recovery:
            return self._recovery.pop(0)
        last = self._last_move
        blocked = last is not None and last[1] == "move_forward" and np.allclose(last[0], gps, atol=1e-3)
        self._stuck = self._stuck + 1 if blocked else 0
        if self._stuck < STUCK_STEPS:
            return None
        self._stuck = 0
        self.recoveries += 1
        turn = "turn_left" if self.recoveries % 2 else "turn_right"
        self._recovery = [turn, turn, "move_forward", "move_forward"]
        self.navigator.reset()
        return turn

    def act(self, observations: dict[str, Any]) -> str:
        """One habitat action name for one observation (see :mod:`~memstream.embodied.envs.miniworld_env`)."""
        phase = observations.get("phase", "task")
        if phase == "history":
            gps, compass = self._perceive(observations)
            self._log_interaction(str(observations.get("history_action", "")), gps, compass)
            return "stop"  # ignored by the env in the history phase
        if not self.task_started:
            self._begin_task()
        gps, compass = self._perceive(observations)
        self.task_steps += 1
        if self.chosen_goals is None:
            self.chosen_goals = self._choose(str(observations.get("instruction", "")))
            self._goal_objects = list(self.objects().values())
            if self.chosen_goals is None:
                return self.navigator.frontier_action(gps, compass) or "turn_left"
        if self.goal_index >= len(self.chosen_goals):
            return "stop"
        goal = self.chosen_goals[self.goal_index]
        action = self._unstick(gps) or self.navigator.act(gps, compass, goal, self._stop_radius(goal))
        self._last_move = (gps.copy(), action)
        distance = float(np.linalg.norm(goal - gps))
        if distance < self._best[0] - 0.05:
            self._best = (distance, self.task_steps)
        stalled = self.task_steps - self._best[1]
        if action is None or (stalled >= 15 and distance <= self._stop_radius(goal) + 0.4) or stalled >= 80:
            self.goal_index += 1  # arrived, or as near as it gets (the estimate is inside an obstacle)
            self.navigator.reset()
            self._best = (math.inf, self.task_steps)
            return "stop"
        return action
