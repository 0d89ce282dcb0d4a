"""MIKASA-Robo tasks behind the project's env protocol, with LeRobot observation keys.

:class:`MikasaEnv` has the surface of :class:`~memstream.embodied.envs.VectorEnv` (``reset`` /
``step`` with auto-reset, ``observe``, ``spec``, ``expert_actions``, ``hidden_info``), so
:func:`~memstream.embodied.envs.evaluate_env` and :func:`~memstream.embodied.envs.run_agent` drive it.

* Observations: ``observation.images.base_camera`` and ``observation.images.hand_camera`` uint8
  (B, H, W, 3) (the suite's top and wrist cameras), ``observation.state`` float32 (B, 7) = tip
  x, y, z (metres, world frame), roll in [0, 2 pi) (:func:`continuous_rpy`), pitch, yaw (radians)
  and the summed finger opening (metres):
  the suite's VLA proprio (``ConvertJointsToEEFXyzRpyGripperWrapper``); ``task`` and the bookkeeping
  keys as every env here.
* Actions: float (B, 7), MemoryVLA's end-effector control: the suite's ``pd_ee_delta_pose``
  (see :mod:`~memstream.embodied.envs.mikasa.experts`). RememberColor zeroes them during the cue and
  empty phases, as the suite's canonical VLA wrapper chain does.
* Episodes: episode ``i`` resets the simulator with seed ``config.seed + i`` (the suite's benchmark
  scores seeds 4242424242 + i: :data:`EVAL_SEED`). It runs to the suite's time limit (25 steps for
  RememberColor, 60 for InterceptMedium) and counts as a success if the suite's ``success`` held
  at any step (the benchmark's ``success_once``); ``end_on_success`` stops it at the first success.
* ``num_envs`` is 1: ManiSkill's CPU backend simulates one env per process
  (``benchmarks/bench_mikasa.py`` measures several processes side by side).
* Rendering (lavapipe on the CPU) is ~95 % of a step. The suite's physics runs in ManiSkill's
  ``state`` mode and the env renders only ``config.cameras`` itself, as ManiSkill's
  ``_get_obs_sensor_data`` does (hide ``_hidden_objects``, ``update_render``, capture, read RGB).
  The wrist camera's housing mesh (``camera_link``: 425k of the scene's 581k triangles) is hidden from
  the cameras unless ``camera_housing`` (ManiSkill's own ``hide_visual`` on the CPU backend: visibility
  0; it has no collision shape, the physics is unchanged). ``timing`` sums the seconds per part.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from memstream.embodied.envs.mikasa.experts import CONTACT_M, MOVING_M_S, intercept_action, remember_color_action
from memstream.embodied.envs.mikasa.sim import make_suite_env
from memstream.embodied.envs.mikasa.tasks import EXPERT_TASKS, MikasaTask, resolve_task
from memstream.embodied.envs.types import EnvSpec, Observation, StepInfo
from memstream.streaming.configtypes import strict_config
from memstream.streaming.errors import ConfigError, MemstreamError

EVAL_SEED = 4242424242  # mikasa_robo_suite.vla.benchmarking.START_SEED: evaluation episode i uses it + i
CAMERAS = ("base_camera", "hand_camera")
ACTION_DIM = 7
STATE_DIM = 7
HOUSING_LINK = "camera_link"  # panda_wristcam's RealSense model: 425k triangles, a 2x slower render on lavapipe


@strict_config
@dataclass(frozen=True)
class MikasaConfig:
    """Settings of a MIKASA-Robo env.

    Attributes:
        task: a name of :data:`~memstream.embodied.envs.mikasa.MIKASA_TASKS` or its suite id.
        seed: episode ``i`` uses simulator seed ``seed + i``.
        image_size: pixels per side of both cameras (MemoryVLA: 128).
        render: False skips the cameras (no ``observation.images.*``): the experts' success check
            runs ~50x faster and the physics is the same.
        end_on_success: end an episode at its first success instead of the time limit.
        cameras: the cameras rendered and observed (a policy reading one image needs one: the
            other's render is skipped).
        camera_housing: draw the wrist camera's housing mesh in the images (the suite's look;
            images differ by < 0.2 grey levels on average on the base camera, and rendering
            takes ~2x as long). Demonstrations and evaluation must use the same setting.
    """

    task: str = "RememberColor3"
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 0
    image_size: Annotated[int, Field(ge=32, le=512)] = 128
    render: bool = True
    end_on_success: bool = False
    cameras: tuple[str, ...] = CAMERAS
    camera_housing: bool = False

    def __post_init__(self) -> None:
        resolve_task(self.task)
        object.__setattr__(self, "cameras", tuple(self.cameras))  # frozen: a list from JSON becomes a tuple
        unknown = [c for c in self.cameras if c not in CAMERAS]
        if unknown or not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras must be distinct names from {CAMERAS}, got {self.cameras}")


def quat_wxyz_to_rpy(quat: np.ndarray) -> np.ndarray:
    """float32 (..., 3) roll, pitch, yaw (radians) of unit quaternions (..., 4) in w, x, y, z order."""
    q = np.asarray(quat, dtype=np.float64)
    q = q / np.clip(np.linalg.norm(q, axis=-1, keepdims=True), 1e-8, None)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    roll = np.arctan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = np.arcsin(np.clip(2 * (w * y - z * x), -1.0, 1.0))
    yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return np.stack([roll, pitch, yaw], axis=-1).astype(np.float32)


def continuous_rpy(rpy: np.ndarray) -> np.ndarray:
    """float32 (..., 3): roll taken into [0, 2 pi) (pitch and yaw unchanged; idempotent).

    The gripper points down, so the roll sits at +-pi: atan2 put it at +3.1 or -3.1 by the arm's
    initial noise (57 % / 43 % of demonstration frames), a binary input unrelated to the task
    that a state normaliser (std 3.1) turned into +-1. Around 0 ... 2 pi it is pi +- a few hundredths.
    """
    out = np.array(rpy, dtype=np.float32, copy=True)
    out[..., 0] = np.mod(out[..., 0], 2 * np.pi)
    return out


def _rotate(quat_wxyz: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """``vector`` (3,) rotated by the unit quaternion (w, x, y, z)."""
    w, xyz = float(quat_wxyz[0]), np.asarray(quat_wxyz[1:], float)
    t = 2 * np.cross(xyz, vector)
    return vector + w * t + np.cross(xyz, t)


def _np(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


# What the scripted experts act on (MikasaEnv.environment_state), per task kind: stored with the
# demonstrations as LeRobot's ``observation.environment_state`` so they can be labelled again by a
# changed expert without the simulator (``memstream vla-relabel``). Metres, m/s, world axes.
ENVIRONMENT_STATE_NAMES = {
    "intercept": ("tip_x", "tip_y", "tip_z", "ball_x", "ball_y", "ball_z", "ball_vx", "ball_vy", "ball_vz",
                  "goal_x", "goal_y", "goal_z", "hand_y_axis_x", "hand_y_axis_y"),
    # the cube of the colour shown (the one to touch); cue_phase 1 while the cue or the empty table shows
    "remember_color": ("tip_x", "tip_y", "tip_z", "cube_x", "cube_y", "cube_z", "cue_phase"),
}


def expert_action(kind: str, environment_state: np.ndarray, step: int) -> np.ndarray:
    """float32 (7,): the scripted expert's action from what it acts on: ``environment_state``, a row
    of :meth:`MikasaEnv.environment_state` (names: :data:`ENVIRONMENT_STATE_NAMES` of ``kind``), and
    the episode's ``step``. :meth:`MikasaEnv.expert_actions` is this on the live state, so a stored
    row gives the same label again (bit for bit, with the same expert).

    Raises:
        ConfigError: ``kind`` has no expert, or the row is not that kind's length.
    """
    names = ENVIRONMENT_STATE_NAMES.get(kind)
    row = np.asarray(environment_state, dtype=np.float64).reshape(-1)
    if names is None or row.shape[0] != len(names):
        raise ConfigError(f"no scripted expert acts on a {kind!r} state of {row.shape[0]} values",
                          f"Pass a row of MikasaEnv.environment_state for one of {', '.join(ENVIRONMENT_STATE_NAMES)}")
    if kind == "remember_color":
        if row[6]:  # the cue or the empty table: actions are frozen
            return np.zeros(ACTION_DIM, dtype=np.float32)
        return remember_color_action(row[0:3], row[3:6])
    return intercept_action(row[0:3], row[3:6], row[6:9], row[9:12], row[12:14], int(step))


class MikasaEnv:
    """One MIKASA-Robo task in the CPU simulator; see the module doc.

    Args:
        config: the task, seeds, image size.

    Raises:
        ConfigError: unknown task or a ShellGame id. MemstreamError: packages or Vulkan missing.
    """

    num_envs = 1
    state_dim = STATE_DIM
    action_dim = ACTION_DIM

    def __init__(self, config: MikasaConfig) -> None:
        self.config = config
        self.task: MikasaTask = resolve_task(config.task)
        self.name = self.task.name
        self.instruction = self.task.instruction  # Rotate: the episode's (its angle), set by each reset
        self.chance_success_rate = self.task.chance_success_rate
        self.max_episode_steps = self.task.max_episode_steps
        self.hidden_dim = 1 if self.task.kind == "remember_color" else 0
        # physics in "state" mode (ManiSkill renders nothing); observe() renders the chosen cameras
        self._sim = make_suite_env(self.task.suite_id, obs_mode="state", control_mode="pd_ee_delta_pose",
                                   image_size=config.image_size)
        self._images: dict[str, np.ndarray] = {}
        #: seconds spent per part since construction: "physics" (control + simulation + the suite's
        #: evaluate) and "render.<camera>"
        self.timing: dict[str, float] = {"physics": 0.0,
                                         **{f"render.{c}": 0.0 for c in (config.cameras if config.render else ())}}
        self._next_episode = 0
        self.frame_index = np.zeros(1, dtype=np.int64)
        self.episode_index = np.full(1, -1, dtype=np.int64)
        self.episode_start = np.zeros(1, dtype=bool)
        self._success_once = np.zeros(1, dtype=bool)

    @property
    def unwrapped(self) -> Any:
        """The suite's ManiSkill env (privileged state: experts and tests only)."""
        return self._sim.unwrapped

    @property
    def spec(self) -> EnvSpec:
        size = self.config.image_size
        return EnvSpec(task=self.name, instruction=self.instruction, num_envs=1, image_shape=(size, size, 3),
                       state_dim=STATE_DIM, action_dim=ACTION_DIM, max_step=0.1,
                       max_episode_steps=self.max_episode_steps,
                       chance_success_rate=self.chance_success_rate, hidden_dim=self.hidden_dim)

    def episode_seed(self, episode_index: int) -> int:
        return self.config.seed + int(episode_index)

    def camera_params(self) -> dict[str, dict[str, list[list[float]]]]:
        """Each of ``config.cameras``' pinhole model, OpenCV convention: ``{"intrinsic_cv": 3x3,
        "extrinsic_cv": 3x4}`` (world to camera), as ManiSkill's sensors report them. The suite's
        cameras are fixed to the world (``base_camera``) or to the hand (``hand_camera``: the
        extrinsic is the current pose's), so a demonstration folder records them once, at collection."""
        sensors = self.unwrapped.scene.sensors
        out = {}
        for camera in self.config.cameras:
            params = sensors[camera].get_params()
            out[camera] = {"intrinsic_cv": _np(params["intrinsic_cv"])[0].astype(float).tolist(),
                           "extrinsic_cv": _np(params["extrinsic_cv"])[0].astype(float).tolist()}
        return out

    def reset(self, mask: Any = None) -> Observation:
        """Start the next episode (``mask`` must be None or ``[True]``: one slot)."""
        if mask is not None and not np.array_equal(np.asarray(mask), [True]):
            raise MemstreamError(f"reset mask must be None or [True] for a one-slot env, got {mask!r}",
                                 "Pass None")
        self._start_episode()
        return self.observe()

    def step(self, actions: Any) -> tuple[Observation, np.ndarray, np.ndarray, np.ndarray, StepInfo]:
        """Apply one action float (1, 7) (clipped to [-1, 1]); auto-reset when the episode ends.

        Returns:
            (observation, reward float32 (1,) = 1 where the suite's success holds after this step,
            terminated bool (1,) (ended by ``end_on_success``), truncated bool (1,) (time limit), info).
            ``info["success"]`` is the episode's ``success_once`` where it ended.
        """
        if self.episode_index[0] < 0:
            raise MemstreamError("step() called before reset()", "Call env.reset() first")
        action = self._check_actions(actions)
        if self.task.freeze_cue_phase and self.in_cue_phase():
            action[:] = 0.0
        import torch

        started = time.perf_counter()
        _, _, _, _, info = self._sim.step(torch.from_numpy(action))
        self.timing["physics"] += time.perf_counter() - started
        if self.task.kind == "rotate" and "language_instruction" in info:  # Rotate names the episode's angle
            self.instruction = str(info["language_instruction"][0])
        success = bool(_np(info["success"]).reshape(-1)[0])
        self._success_once |= success
        self.frame_index += 1
        terminated = np.array([self.config.end_on_success and success])
        truncated = ~terminated & (self.frame_index >= self.max_episode_steps)
        done = bool(terminated[0] or truncated[0])
        info_out = StepInfo(success=self._success_once & done, failure=np.zeros(1, dtype=bool),
                            episode_index=self.episode_index.copy(),
                            episode_length=np.where(done, self.frame_index, 0))
        self.episode_start[:] = False
        if done:
            self._start_episode()
        else:
            self._render()
        return self.observe(), np.array([float(success)], dtype=np.float32), terminated, truncated, info_out

    def observe(self) -> Observation:
        """The current observation (LeRobot keys; images only when rendering)."""
        base = self.unwrapped
        tcp = _np(base.agent.tcp.pose.raw_pose)[0]
        fingers = _np(base.agent.robot.get_qpos())[0, -2:]
        state = np.concatenate([tcp[:3], continuous_rpy(quat_wxyz_to_rpy(tcp[3:7])), [fingers.sum()]]).astype(np.float32)
        obs: dict[str, Any] = {}
        for camera, image in self._images.items():
            obs[f"observation.images.{camera}"] = image.copy()
        obs.update({"observation.state": state[None], "task": [self.instruction],
                    "episode_start": self.episode_start.copy(), "frame_index": self.frame_index.copy(),
                    "episode_index": self.episode_index.copy()})
        return obs  # type: ignore[return-value]

    # ----- privileged state: the experts and the demonstrations' metadata -----

    def in_cue_phase(self) -> bool:
        """RememberColor: the cue or the empty table is still shown (actions are frozen)."""
        base = self.unwrapped
        if not hasattr(base, "cue_steps_per_env"):
            return False
        end = int(_np(base.cue_steps_per_env)[0] + _np(base.empty_steps_per_env)[0])
        return int(_np(base.elapsed_steps).reshape(-1)[0]) < end

    @property
    def hidden_info(self) -> np.ndarray:
        """int64 (1, hidden_dim): the colour index shown (RememberColor); (1, 0) for Intercept."""
        if self.task.kind != "remember_color":
            return np.zeros((1, 0), dtype=np.int64)
        return _np(self.unwrapped.true_color_indices).astype(np.int64).reshape(1, 1)

    @property
    def reveal_frames(self) -> np.ndarray:
        """int64 (1,): frames at the start of the episode that show the cue (all of them for Intercept)."""
        if self.task.kind != "remember_color":
            return np.array([self.max_episode_steps], dtype=np.int64)
        return _np(self.unwrapped.cue_steps_per_env).astype(np.int64).reshape(1)

    def cube_distances(self) -> np.ndarray:
        """float32 (colours,): metres from the tip to each cube's centre, in colour-index order
        (RememberColor; ``hidden_info`` names the target); (0,) for Intercept. Evaluation reports
        only: it tells a wrong choice of cube from an imprecise touch of the right one."""
        return np.linalg.norm(self.cube_offsets(), axis=1).astype(np.float32)

    def cube_offsets(self) -> np.ndarray:
        """float32 (colours, 3): the tip minus each cube's centre in metres, world axes (x away from
        the robot's base, z up), colour-index order; (0, 3) for Intercept. Evaluation reports only:
        which way an imprecise touch misses (the expert stops 0.035 m above the centre)."""
        if self.task.kind != "remember_color":
            return np.zeros((0, 3), dtype=np.float32)
        base = self.unwrapped
        tcp = _np(base.agent.tcp.pose.p)[0]
        return np.array([tcp - _np(base.cubes[k].pose.p)[0] for k in sorted(base.cubes)], dtype=np.float32).reshape(-1, 3)

    def ball_distances(self) -> np.ndarray:
        """float32 (2,): metres from the tip to the ball's centre, and from the ball to the goal's centre
        on the table plane (Intercept); (0,) for RememberColor. Evaluation reports only: they tell a
        hand that never reached the ball from a push that went off line."""
        if self.task.kind != "intercept":
            return np.zeros(0, dtype=np.float32)
        base = self.unwrapped
        ball = _np(base.ball.pose.p)[0]
        return np.array([np.linalg.norm(_np(base.agent.tcp.pose.p)[0] - ball),
                         np.linalg.norm((ball - _np(base.goal_region.pose.p)[0])[:2])], dtype=np.float32)

    def ball_motion(self) -> np.ndarray:
        """float32 (6,): the tip minus the ball's centre (metres) and the ball's velocity (m/s), world
        axes (Intercept); (0,) for RememberColor. Evaluation reports only: a track of them gives
        :func:`catch_geometry`, where the hand was when the rolling ball reached it."""
        if self.task.kind != "intercept":
            return np.zeros(0, dtype=np.float32)
        base = self.unwrapped
        return np.concatenate([_np(base.agent.tcp.pose.p)[0] - _np(base.ball.pose.p)[0],
                               _np(base.ball.linear_velocity)[0]]).astype(np.float32)

    def goal_offset(self) -> np.ndarray:
        """float32 (2,): the goal's centre minus the ball's centre on the table plane, metres, world axes
        (Intercept); (0,) for RememberColor. Evaluation reports only: where a push should send the ball."""
        if self.task.kind != "intercept":
            return np.zeros(0, dtype=np.float32)
        base = self.unwrapped
        return (_np(base.goal_region.pose.p)[0] - _np(base.ball.pose.p)[0])[:2].astype(np.float32)

    def expert_actions(self) -> np.ndarray:
        """float32 (1, 7): the scripted expert's action for the current state.

        Raises:
            MemstreamError: the task has no scripted expert (``MikasaTask.expert``).
        """
        return expert_action(self.task.kind, self.environment_state()[0], int(self.frame_index[0]))[None]

    def environment_state(self) -> np.ndarray:
        """float64 (1, E): what the scripted expert acts on now (:data:`ENVIRONMENT_STATE_NAMES` of the
        task's kind): privileged simulator state, never a policy's input.

        Raises:
            MemstreamError: the task has no scripted expert.
        """
        if not self.task.expert:
            raise MemstreamError(f"MIKASA-Robo task {self.name!r} has no scripted expert",
                                 f"Experts exist for {', '.join(EXPERT_TASKS)}")
        base = self.unwrapped
        tcp = _np(base.agent.tcp.pose.p)[0]
        if self.task.kind == "remember_color":
            cube = _np(base.cubes[int(self.hidden_info[0, 0])].pose.p)[0]
            row = np.concatenate([tcp, cube, [float(self.in_cue_phase())]])
        else:
            hand_y = _rotate(_np(base.agent.tcp.pose.q)[0], np.array([0.0, 1.0, 0.0]))[:2]
            row = np.concatenate([tcp, _np(base.ball.pose.p)[0], _np(base.ball.linear_velocity)[0],
                                  _np(base.goal_region.pose.p)[0], hand_y])
        return row.astype(np.float64)[None]

    def close(self) -> None:
        self._sim.close()

    def _render(self) -> None:
        """Render ``config.cameras`` for the current state into ``self._images`` (uint8 (1, H, W, 3))."""
        if not self.config.render:
            return
        base = self.unwrapped
        for obj in base._hidden_objects:  # what ManiSkill's _get_obs_sensor_data does before a capture
            obj.hide_visual()
        self._show_housing(self.config.camera_housing)
        started = time.perf_counter()
        base.scene.update_render(update_sensors=True, update_human_render_cameras=False)
        for camera in self.config.cameras:
            sensor = base.scene.sensors[camera]
            sensor.capture()
            rgb = sensor.get_obs(rgb=True, depth=False, position=False, segmentation=False)["rgb"]
            self._images[camera] = _np(rgb)[..., :3]
            now = time.perf_counter()
            self.timing[f"render.{camera}"] += now - started
            started = now

    def _show_housing(self, visible: bool) -> None:
        import sapien

        link = self.unwrapped.agent.robot.links_map.get(HOUSING_LINK)
        for obj in [] if link is None else link._objs:
            body = obj.entity.find_component_by_type(sapien.render.RenderBodyComponent)
            if body is not None:
                body.visibility = 1.0 if visible else 0.0

    def _start_episode(self) -> None:
        episode = self._next_episode
        self._next_episode += 1
        # ManiSkill seeds torch's generator from this seed around the task's reset (the suite draws its
        # cube jitter, shuffles, phase lengths and the ball's start from it), so the episode is reproducible.
        started = time.perf_counter()
        self._sim.reset(seed=self.episode_seed(episode))
        if self.task.kind == "rotate":  # the angle is drawn by the reset; evaluate() names it (and only reads state)
            self.instruction = str(self.unwrapped.evaluate()["language_instruction"][0])
        self.timing["physics"] += time.perf_counter() - started
        self.episode_index[:] = episode
        self.frame_index[:] = 0
        self.episode_start[:] = True
        self._success_once[:] = False
        self._render()

    def _check_actions(self, actions: Any) -> np.ndarray:
        try:
            array = np.array(_np(actions), dtype=np.float32)
        except (TypeError, ValueError) as error:
            raise MemstreamError(f"actions must be numbers, got {type(actions).__name__} ({error})",
                                 "Pass a float array of shape (1, 7)") from error
        if array.shape != (1, ACTION_DIM):
            raise MemstreamError(f"MIKASA-Robo actions must have shape (1, 7) (slot, end-effector delta pose + "
                                 f"gripper), got {array.shape}",
                                 "Return [dx, dy, dz, drx, dry, drz, gripper] in [-1, 1] per slot")
        if not np.isfinite(array).all():
            raise MemstreamError("actions contain NaN or infinity", "Check the policy's output")
        return np.clip(array, -1.0, 1.0)


def catch_geometry(motion: np.ndarray, reach_m: float = CONTACT_M + 0.01) -> dict[str, Any]:
    """Where the hand was when the rolling ball reached it, from one episode's steps of
    :meth:`MikasaEnv.ball_motion` (``(T, 6)``: tip minus ball, ball velocity).

    The ball *reaches* the hand at the first step it is rolling (at least
    :data:`~memstream.embodied.envs.mikasa.experts.MOVING_M_S`) with the tip less than ``reach_m``
    ahead of its centre along its direction of travel, after a step where the tip was farther ahead
    (the fingers touch the ball at :data:`~memstream.embodied.envs.mikasa.experts.CONTACT_M`; the
    default allows one more centimetre). That step is ``catch_step``; ``catch_offset_m`` is the tip
    minus the ball's centre there (x / y / z: z tells a hand still up from one down on the table) and
    ``catch_across_m`` the tip's signed distance from the ball's line of travel (positive on its
    left), with the ball's speed as ``catch_ball_speed_m_s``: a hand down more than ``CONTACT_M``
    across let the ball roll past. A ball that never rolled up to the hand gives the closest
    approach instead, with ``catch_across_m`` None; ``ball_reached_hand`` says which.
    """
    motion = np.asarray(motion, np.float64).reshape(-1, 6)
    offsets, velocities = motion[:, :3], motion[:, 3:5]
    speed = np.linalg.norm(velocities, axis=1)
    rolling = speed >= MOVING_M_S
    direction = velocities / np.maximum(speed, 1e-9)[:, None]
    along = (offsets[:, :2] * direction).sum(axis=1)
    ahead = np.cumsum(rolling & (along >= reach_m)) > 0  # the hand was ahead of the rolling ball by then
    reached = np.flatnonzero(rolling & (along < reach_m) & np.concatenate([[False], ahead[:-1]]))
    step = int(reached[0]) if len(reached) else int(np.linalg.norm(offsets, axis=1).argmin())
    across = None
    if len(reached):
        across = round(float(direction[step, 0] * offsets[step, 1] - direction[step, 1] * offsets[step, 0]), 4)
    return {"catch_step": step, "catch_offset_m": [round(float(v), 4) for v in offsets[step]],
            "catch_across_m": across, "catch_ball_speed_m_s": round(float(speed[step]), 4),
            "ball_reached_hand": bool(len(reached))}


def catch_step_so_far(motion: list[np.ndarray] | np.ndarray) -> int | None:
    """The step at which the rolling ball reached the hand (:func:`catch_geometry`'s ``catch_step``)
    among an episode's steps of :meth:`MikasaEnv.ball_motion` so far, or None while it has not: what
    a rollout that hands the episode over after the catch checks at every step (causal: the answer
    for the steps so far never changes with later ones)."""
    caught = catch_geometry(motion)  # it takes the list of steps as it is
    return int(caught["catch_step"]) if caught["ball_reached_hand"] else None


def make_mikasa_env(task: str, seed: int = 0, image_size: int = 128, render: bool = True,
                    end_on_success: bool = False, cameras: tuple[str, ...] = CAMERAS,
                    camera_housing: bool = False) -> MikasaEnv:
    """Build a :class:`MikasaEnv` (see :class:`MikasaConfig` for the arguments)."""
    try:
        config = MikasaConfig(task=task, seed=seed, image_size=image_size, render=render,
                              end_on_success=end_on_success, cameras=tuple(cameras),
                              camera_housing=camera_housing)
    except ValueError as error:
        raise ConfigError(str(error), "See MikasaConfig for the allowed values") from None
    return MikasaEnv(config)
