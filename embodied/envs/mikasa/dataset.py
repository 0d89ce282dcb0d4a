"""Expert demonstrations on disk: Parquet tables + H.264 videos in LeRobot's v2.1 folder layout.

One folder per dataset, written episode by episode (a reader can stream the episodes finished so
far; a crashed collection keeps them)::

    meta/info.json            fps, features (dtype, shape, names), totals, path templates; ours
                              under "memstream": task, control mode, camera housing, and each
                              camera's intrinsic_cv / extrinsic_cv (OpenCV, world to camera)
    meta/tasks.jsonl          {"task_index": 0, "task": "<instruction>"}
    meta/episodes.jsonl       per episode: episode_index, tasks, length, and ours: seed, success,
                              hidden_info (colour index shown), reveal_frames (cue frames),
                              handover_step (expert_catches: where the driver took over; None
                              where the ball never reached the hand)
    data/chunk-000/episode_000000.parquet
        observation.state float32[7], action float32[7], timestamp float32 (s), frame_index,
        episode_index, index (global frame), task_index (int64), next.reward float32,
        next.done bool, next.success bool, and (folders written since stop 51)
        observation.environment_state float64[E]: what the expert acted on, privileged simulator
        state named in ``features`` (``env.ENVIRONMENT_STATE_NAMES``), never a policy input;
        :func:`relabel_demonstrations` labels the frames again from it with a changed expert
    videos/chunk-000/observation.images.<camera>/episode_000000.mp4   H.264, yuv420p, crf 18, 20 fps,
        every frame a key frame (``video.g`` 1)

Every frame is coded on its own (intra only, :data:`KEYINT`): with inter-coded frames, the frames
after RememberColor's cue kept a faint, decodable residue of the cue cube (a linear classifier on the
stored "empty" frames named the cue colour at 0.96-1.00, on the same frames rendered raw at chance:
``benchmarks/diag_mikasa_leak.py``), so a policy could learn the cue without memory from stored
demonstrations and then meet raw frames in the simulator. Datasets written before carry no
``video.g`` and are named as such by ``vla-train``.

Frame ``t`` of an episode pairs the observation with the action taken in it (LeRobot's convention).
The layout and column names follow LeRobot's v2.1 datasets (``data_path`` / ``video_path``
templates, ``meta/*.jsonl``; no ``meta/episodes_stats.jsonl``). lerobot 0.4.4 reads only v3.0: it
refuses these folders, and its v2.1 -> v3.0 converter stops on the missing episode statistics;
:func:`~memstream.embodied.envs.mikasa.lerobot_export.export_lerobot` (``memstream vla-export``)
writes a v3.0 copy that its ``LeRobotDataset`` opens (tested). :func:`read_demonstrations` reads
the folders written here back.

Example::

    info = write_demonstrations("demos/rc3", "RememberColor3", num_episodes=250, seed=0)
    for episode in read_demonstrations("demos/rc3").episodes():
        episode["observation.images.base_camera"].shape   # (T, 128, 128, 3) uint8
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memstream.embodied.envs.mikasa.env import (ACTION_DIM, CAMERAS, ENVIRONMENT_STATE_NAMES, EVAL_SEED, STATE_DIM,
                                               catch_step_so_far, expert_action, make_mikasa_env)
from memstream.embodied.envs.mikasa.tasks import EXPERT_TASKS, resolve_task
from memstream.streaming.atomic import write_json_atomic
from memstream.streaming.errors import ConfigError, MemstreamError
from memstream.streaming.progress import progress as progress_bar

FPS = 20  # the suites' control frequency
KEYINT = 1  # every frame a key frame: no frame's pixels depend on an earlier one (see the module's docstring)
# with expert_catches, the driver takes over this many steps after the rolling ball reaches the hand (the
# expert has stopped it by then); benchmarks/diag_mikasa_push.py handover measures episodes split so
HANDOVER_STEPS = 2
CRF = 18  # x264's "visually lossless"; the 2.5 px InterceptMedium ball's centroid moves 0.26 px (median, diag_mikasa_codec.py)
CHUNK = 1000
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
STATE_NAMES = ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]
ACTION_NAMES = ["dx", "dy", "dz", "drx", "dry", "drz", "gripper"]
EVAL_EPISODES = 100  # MemoryVLA's evaluation episodes per task: seeds EVAL_SEED .. EVAL_SEED + 99
ENVIRONMENT_STATE = "observation.environment_state"  # LeRobot's key for privileged state (e.g. PushT's)


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ModuleNotFoundError:
        raise MemstreamError("the demonstrations are Parquet files and pyarrow is not installed",
                             "pip install 'memstream[mikasa]'") from None
    return pyarrow


def features(image_size: int, cameras: tuple[str, ...] = CAMERAS,
             environment_state: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """LeRobot's ``features`` entry of ``meta/info.json`` for these datasets; ``environment_state``:
    the names of the expert's inputs stored per frame (none: the column is absent)."""
    video = {"dtype": "video", "shape": [image_size, image_size, 3], "names": ["height", "width", "channels"],
             "info": {"video.fps": FPS, "video.codec": "h264", "video.pix_fmt": "yuv420p", "video.g": KEYINT,
                      "has_audio": False}}
    scalar = {"shape": [1], "names": None}
    return {
        **{f"observation.images.{camera}": video for camera in cameras},
        "observation.state": {"dtype": "float32", "shape": [STATE_DIM], "names": STATE_NAMES},
        "action": {"dtype": "float32", "shape": [ACTION_DIM], "names": ACTION_NAMES},
        "timestamp": {"dtype": "float32", **scalar}, "frame_index": {"dtype": "int64", **scalar},
        "episode_index": {"dtype": "int64", **scalar}, "index": {"dtype": "int64", **scalar},
        "task_index": {"dtype": "int64", **scalar}, "next.reward": {"dtype": "float32", **scalar},
        "next.done": {"dtype": "bool", **scalar}, "next.success": {"dtype": "bool", **scalar},
        **({ENVIRONMENT_STATE: {"dtype": "float64", "shape": [len(environment_state)], "names": list(environment_state)}}
           if environment_state else {}),
    }


def check_seeds_disjoint(seed: int, num_episodes: int) -> None:
    """Demonstration seeds ``seed .. seed + n - 1`` must not meet the evaluation seeds."""
    if seed < EVAL_SEED + EVAL_EPISODES and EVAL_SEED < seed + num_episodes:
        raise ConfigError(f"demonstration seeds {seed}..{seed + num_episodes - 1} overlap the evaluation seeds "
                          f"{EVAL_SEED}..{EVAL_SEED + EVAL_EPISODES - 1}",
                          "Collect demonstrations from seed 0 (the default)")


def check_expert(task: str) -> None:
    """Demonstrations come from a scripted expert: refuse a task without one (before anything is written)."""
    resolved = resolve_task(task)
    if not resolved.expert:
        raise ConfigError(f"MIKASA-Robo task {resolved.name!r} has no scripted expert, so no demonstrations can be "
                          "collected for it", f"Collect one of {', '.join(EXPERT_TASKS)}")


def write_demonstrations(root: str | Path, task: str, num_episodes: int, seed: int = 0, image_size: int = 128,
                         keep_failures: bool = False, cameras: tuple[str, ...] = CAMERAS,
                         camera_housing: bool = False, progress: bool | None = False,
                         driver: Callable[[Any], Any] | None = None, expert_mix: float = 0.0,
                         driver_record: dict[str, Any] | None = None, expert_catches: bool = False) -> dict[str, Any]:
    """Roll out the scripted expert of ``task`` and write each episode as it ends.

    With a ``driver`` the episodes are DAgger's (Ross et al., 2011): a trained policy drives and the
    expert labels every state it visits, so a policy learns to recover from the states its own
    mistakes lead to, which expert rollouts never show (the stored ``action`` is always the expert's).

    Args:
        root: the dataset folder; must not hold a dataset already.
        task, seed, image_size: as for :func:`make_mikasa_env`; episode ``i`` uses seed ``seed + i``.
        num_episodes: episodes rolled out, >= 1.
        keep_failures: also store episodes the expert failed (flagged ``success: false``); by
            default they are dropped and counted.
        cameras, camera_housing: as for :class:`~memstream.embodied.envs.mikasa.MikasaConfig`
            (recorded in ``meta/info.json``'s ``memstream`` entry: evaluation renders the same way).
        progress: a bar over the rollouts (``None``: when stderr is a terminal; see
            :func:`memstream.streaming.progress.progress`).
        driver: a function of the env returning what acts in it: an object with ``start_episode()``
            and ``__call__(obs) -> (1, 7)`` actions, called at every step (a policy's memory sees
            every frame). Every episode is kept (its labels are the expert's whatever happened),
            flagged with the success of the rollout as driven.
        expert_mix: with a driver, the probability that a step executes the expert's action instead
            (DAgger's beta; 0: the driver alone, 1: an expert rollout the driver only watches).
        driver_record: what the collection records about the driver in ``meta/info.json``
            (``memstream.dagger``, with ``expert_mix`` and, when set, ``expert_catches``).
        expert_catches: with a driver, on an Intercept task: the expert acts until
            :data:`HANDOVER_STEPS` after the rolling ball reaches the hand (:func:`catch_step_so_far`),
            the driver from there (with ``expert_mix`` as before), so every rollout starts its push
            from a caught ball: the states DAgger labels are the push's (``diag_mikasa_push.py
            handover``: a policy's push from the expert's catches keeps about half the episodes).

    Returns:
        ``meta/info.json``'s content plus ``success_rate`` (of the rollouts as executed).
    """
    if not 0.0 <= expert_mix <= 1.0:
        raise ConfigError(f"expert_mix must lie in [0, 1], got {expert_mix}", "Pass expert_mix 0 (the policy drives)")
    if expert_catches and (driver is None or resolve_task(task).kind != "intercept"):
        raise ConfigError(f"expert_catches hands an Intercept episode from the expert to a driver after the catch; "
                          f"this collection has {'no driver' if driver is None else f'task {task!r}'}",
                          "Drop expert_catches, or collect an Intercept task with a driver")
    if isinstance(num_episodes, bool) or not isinstance(num_episodes, int) or num_episodes < 1:
        raise ConfigError(f"num_episodes must be an int >= 1, got {num_episodes!r}", "Pass num_episodes >= 1")
    check_expert(task)
    check_seeds_disjoint(seed, num_episodes)
    root = Path(root)
    if (root / "meta" / "info.json").exists():
        raise ConfigError(f"{str(root)!r} already holds a dataset", "Pick a new folder or delete the old one")
    env = make_mikasa_env(task, seed=seed, image_size=image_size, cameras=cameras, camera_housing=camera_housing)
    successes = 0
    try:
        obs = env.reset()
        writer = _DatasetWriter(root, env.name, env.instruction, image_size, env.config.cameras, camera_housing,
                                env.camera_params(), ENVIRONMENT_STATE_NAMES[resolve_task(task).kind])
        writer.info["memstream"].update(expert_records(resolve_task(task).kind))
        acting = None if driver is None else driver(env)
        if acting is not None:
            writer.info["memstream"]["dagger"] = {**(driver_record or {}), "expert_mix": expert_mix,
                                                  **({"expert_catches": True} if expert_catches else {})}
        mixer = np.random.default_rng(seed)
        who = "expert" if acting is None else "rollouts"
        with progress_bar(f"collect {env.name} demonstrations", num_episodes, unit="episodes", show=progress) as bar:
            for _ in range(num_episodes):
                episode = _rollout(env, obs, acting, expert_mix, mixer, expert_catches)
                obs = episode.pop("next_obs")
                successes += bool(episode["success"])
                if episode["success"] or keep_failures or acting is not None:
                    writer.add(episode)
                bar.advance()
                bar.status(f"{who} succeeded {successes}")
    finally:
        env.close()
    return {**writer.info, "success_rate": successes / num_episodes, "rollouts": num_episodes}


def expert_records(kind: str) -> dict[str, dict[str, float]]:
    """``meta/info.json``'s ``memstream`` entries naming the expert that labels a folder of task ``kind``
    now: ``expert`` (what it demonstrates: part of :func:`check_joinable`'s settings) and, on
    Intercept, ``expert_labels`` (how it labels states only a policy reaches)."""
    if kind == "remember_color":  # where the expert stops: what a policy learns to touch
        from memstream.embodied.envs.mikasa.experts import TOUCH_HEIGHT_M

        return {"expert": {"touch_height_m": TOUCH_HEIGHT_M}}
    # how the expert pushes the ball: one-step kicks (no record, before stop 41) or a run-up
    from memstream.embodied.envs.mikasa.experts import LOW_CLEAR_M, PUSH_SPEED, RUN_UP_M

    # expert_labels: how it labels a hand down off its run-up point (a policy's state, in DAgger): it
    # slides there when the way clears the ball (no record: it lifted off every miss, before stop 50).
    # Not part of check_joinable's settings: both demonstrate the same push and DAgger aggregates rounds
    return {"expert": {"push_run_up_m": RUN_UP_M, "push_speed": PUSH_SPEED},
            "expert_labels": {"low_clear_m": LOW_CLEAR_M}}


def _rollout(env: Any, obs: dict[str, Any], driver: Any = None, expert_mix: float = 0.0,
             mixer: np.random.Generator | None = None, expert_catches: bool = False) -> dict[str, Any]:
    """One episode from its first observation ``obs``, labelled by the expert and driven by it or by
    ``driver`` (see :func:`write_demonstrations`); returns its arrays and metadata."""
    frames: dict[str, list[np.ndarray]] = {f"observation.images.{c}": [] for c in env.config.cameras}
    states, actions, rewards, privileged = [], [], [], []
    hidden, reveal = env.hidden_info[0].tolist(), int(env.reveal_frames[0])
    episode_index = int(obs["episode_index"][0])
    motion: list[np.ndarray] = []  # with expert_catches: the ball's motion so far, for the catch step
    handover: int | None = None  # the step the driver takes over (expert_catches), once the ball was caught
    if driver is not None:
        driver.start_episode()
    while True:
        for key in frames:
            frames[key].append(obs[key][0])
        states.append(obs["observation.state"][0])
        privileged.append(env.environment_state()[0])  # the row that labels this frame (env.expert_actions on it)
        action = expert_action(env.task.kind, privileged[-1], int(obs["frame_index"][0]))[None]
        actions.append(action[0])
        if driver is not None:
            driven = np.asarray(driver(obs), np.float32).reshape(action.shape)
            if expert_catches and handover is None:
                motion.append(env.ball_motion())
                caught = catch_step_so_far(motion)
                handover = None if caught is None else caught + HANDOVER_STEPS
            catching = expert_catches and (handover is None or len(states) - 1 < handover)
            expert_acts = catching or expert_mix >= 1.0 or (expert_mix > 0.0 and mixer is not None
                                                             and mixer.random() < expert_mix)
            if not expert_acts:
                action = driven
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(float(reward[0]))
        if terminated[0] or truncated[0]:
            break
    return {"frames": {k: np.stack(v) for k, v in frames.items()}, "states": np.stack(states),
            "actions": np.stack(actions), "rewards": np.array(rewards, dtype=np.float32),
            "environment_states": np.stack(privileged),
            "success": bool(info["success"][0]), "seed": env.episode_seed(episode_index),
            "hidden_info": hidden, "reveal_frames": reveal, "next_obs": obs,
            **({"handover_step": handover} if expert_catches else {})}


class _DatasetWriter:
    """Appends episodes to a dataset folder and keeps ``meta/`` current after each one."""

    def __init__(self, root: Path, task_name: str, instruction: str, image_size: int,
                 cameras: tuple[str, ...] = CAMERAS, camera_housing: bool = False,
                 camera_params: dict[str, Any] | None = None, environment_state: Sequence[str] = ()) -> None:
        self.root = root
        self.info: dict[str, Any] = {
            "codebase_version": "v2.1", "robot_type": "panda_wristcam", "total_episodes": 0, "total_frames": 0,
            "total_tasks": 1, "total_videos": 0, "total_chunks": 1, "chunks_size": CHUNK, "fps": FPS,
            "splits": {"train": "0:0"}, "data_path": DATA_PATH, "video_path": VIDEO_PATH,
            "features": features(image_size, cameras, environment_state),
            "memstream": {"task": task_name, "control_mode": "pd_ee_delta_pose", "camera_housing": camera_housing},
        }
        if camera_params:  # folders written before it was recorded lack it (see memvla.mikasa.demonstration_camera)
            self.info["memstream"]["camera_params"] = camera_params
        (root / "meta").mkdir(parents=True, exist_ok=True)
        (root / "meta" / "tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": instruction}) + "\n")
        (root / "meta" / "episodes.jsonl").write_text("")
        self.instruction = instruction

    def add(self, episode: dict[str, Any]) -> None:
        from memstream.streaming.videoio import VideoWriter

        pa = _pyarrow()
        index = self.info["total_episodes"]
        length = len(episode["actions"])
        start = self.info["total_frames"]
        done = np.zeros(length, dtype=bool)
        done[-1] = True
        success = np.zeros(length, dtype=bool)
        success[-1] = episode["success"]
        columns = {
            "observation.state": pa.array(list(episode["states"].astype(np.float32)), pa.list_(pa.float32(), STATE_DIM)),
            "action": pa.array(list(episode["actions"].astype(np.float32)), pa.list_(pa.float32(), ACTION_DIM)),
            "timestamp": pa.array(np.arange(length, dtype=np.float32) / FPS),
            "frame_index": pa.array(np.arange(length, dtype=np.int64)),
            "episode_index": pa.array(np.full(length, index, dtype=np.int64)),
            "index": pa.array(start + np.arange(length, dtype=np.int64)),
            "task_index": pa.array(np.zeros(length, dtype=np.int64)),
            "next.reward": pa.array(episode["rewards"]), "next.done": pa.array(done), "next.success": pa.array(success),
        }
        if ENVIRONMENT_STATE in self.info["features"]:
            width = self.info["features"][ENVIRONMENT_STATE]["shape"][0]
            columns[ENVIRONMENT_STATE] = pa.array(list(episode["environment_states"].astype(np.float64)),
                                                  pa.list_(pa.float64(), width))
        path = self.root / DATA_PATH.format(episode_chunk=index // CHUNK, episode_index=index)
        path.parent.mkdir(parents=True, exist_ok=True)
        pa.parquet.write_table(pa.table(columns), path)
        for key, frames in episode["frames"].items():
            video = self.root / VIDEO_PATH.format(episode_chunk=index // CHUNK, video_key=key, episode_index=index)
            video.parent.mkdir(parents=True, exist_ok=True)
            with VideoWriter(video, FPS, codec="h264", crf=CRF, keyint=KEYINT) as writer:
                for frame in frames:
                    writer.write(frame)
        self._commit({"episode_index": index, "tasks": [self.instruction], "length": length, "seed": episode["seed"],
                      "success": episode["success"], "hidden_info": episode["hidden_info"],
                      "reveal_frames": episode["reveal_frames"],
                      **({"handover_step": episode["handover_step"]} if "handover_step" in episode else {})},
                     len(episode["frames"]))

    def copy_episode(self, reader: DemonstrationReader, i: int, drop: Sequence[str] = (),
                     rewrite: Callable[[Any], Any] | None = None) -> None:
        """Append episode ``i`` of another dataset as it is stored: its Parquet rows with this
        dataset's episode and frame indices (less the columns ``drop``; then through ``rewrite``, a
        function of the table returning the table to store), its videos copied byte for byte (not
        re-encoded)."""
        pa = _pyarrow()
        index = self.info["total_episodes"]
        table = reader.renumbered_table(i, index, self.info["total_frames"])
        table = table.drop_columns([name for name in drop if name in table.column_names])
        if rewrite is not None:
            table = rewrite(table)
        length = table.num_rows
        path = self.root / DATA_PATH.format(episode_chunk=index // CHUNK, episode_index=index)
        path.parent.mkdir(parents=True, exist_ok=True)
        pa.parquet.write_table(table, path)
        videos = [key for key, feature in reader.info["features"].items() if feature["dtype"] == "video"]
        for key in videos:
            video = self.root / VIDEO_PATH.format(episode_chunk=index // CHUNK, video_key=key, episode_index=index)
            video.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(reader.video_file(i, key), video)
        self._commit({**reader.records[i], "episode_index": index, "length": length}, len(videos))

    def _commit(self, record: dict[str, Any], videos: int) -> None:
        """Record an episode whose files are written; ``meta/`` stays a valid dataset after each."""
        index, length = record["episode_index"], record["length"]
        with open(self.root / "meta" / "episodes.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        self.info["total_episodes"] = index + 1
        self.info["total_frames"] += length
        self.info["total_videos"] = (index + 1) * videos
        self.info["total_chunks"] = index // CHUNK + 1
        self.info["splits"] = {"train": f"0:{index + 1}"}
        write_json_atomic(self.root / "meta" / "info.json", self.info)  # whole: a reader never sees half of it


class DemonstrationReader:
    """Reads a folder written by :func:`write_demonstrations`, one episode at a time.

    Attributes:
        info: ``meta/info.json``. records: ``meta/episodes.jsonl`` rows. tasks: instruction strings.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        try:
            self.info = json.loads((self.root / "meta" / "info.json").read_text())
            *lines, last = (self.root / "meta" / "episodes.jsonl").read_text().split("\n")
            self.records = [json.loads(line) for line in lines if line.strip()]
            if last.strip():  # no final newline: a complete record, or one whose writer was killed mid-line
                with contextlib.suppress(ValueError):  # (its episode unfinished: the dataset as it was before it)
                    self.records.append(json.loads(last))
            self.tasks = [json.loads(line)["task"] for line in (self.root / "meta" / "tasks.jsonl").read_text().splitlines()
                          if line.strip()]
        except (OSError, ValueError, KeyError) as error:
            raise MemstreamError(f"{str(self.root)!r} is not a demonstration dataset ({error})",
                                 "Pass a folder written by write_demonstrations") from error

    def __len__(self) -> int:
        return len(self.records)

    def data_file(self, i: int) -> Path:
        """Episode ``i``'s Parquet file."""
        source = self.records[i]["episode_index"]
        return self.root / self.info["data_path"].format(episode_chunk=source // self.info["chunks_size"],
                                                         episode_index=source)

    def video_file(self, i: int, key: str) -> Path:
        """Episode ``i``'s video of the feature ``key``."""
        source = self.records[i]["episode_index"]
        return self.root / self.info["video_path"].format(episode_chunk=source // self.info["chunks_size"],
                                                          video_key=key, episode_index=source)

    def renumbered_table(self, i: int, episode_index: int, start: int) -> Any:
        """Episode ``i``'s Parquet rows as another dataset holds them: ``episode_index`` set, frame
        ``index`` counted from ``start``."""
        pa = _pyarrow()
        table = pa.parquet.read_table(self.data_file(i))
        for name, column in (("episode_index", np.full(table.num_rows, episode_index, dtype=np.int64)),
                             ("index", start + np.arange(table.num_rows, dtype=np.int64))):
            table = table.set_column(table.schema.get_field_index(name), name, pa.array(column))
        return table

    def episode(self, i: int) -> dict[str, Any]:
        """Episode ``i``: the Parquet columns as numpy arrays, ``actions`` / ``states`` stacked, the
        decoded videos as uint8 (T, H, W, 3) under their feature keys, and its ``meta`` record."""
        table = _pyarrow().parquet.read_table(self.data_file(i))
        dtypes = {key: feature["dtype"] for key, feature in self.info["features"].items()}
        out: dict[str, Any] = {name: np.asarray(table.column(name).to_pylist(), dtype=dtypes.get(name))
                               for name in table.column_names}
        out["actions"] = out["action"].astype(np.float32)
        out["states"] = out["observation.state"].astype(np.float32)
        for key, feature in self.info["features"].items():
            if feature["dtype"] == "video":
                out[key] = _decode(self.video_file(i, key))
        out["meta"] = self.records[i]
        return out

    def episodes(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self.episode(i)


def read_demonstrations(root: str | Path) -> DemonstrationReader:
    """Open a dataset folder written by :func:`write_demonstrations`."""
    return DemonstrationReader(root)


def check_joinable(readers: Sequence[DemonstrationReader], camera: str | None = None) -> None:
    """Demonstration folders that can be trained on, or merged, as one dataset: the same task,
    rendering (camera housing) and features (every camera's, or only ``camera``'s, shape and
    encoding; the state and the action: not the expert's stored inputs, which no policy reads), and
    no simulator seed in two of them.

    Raises:
        ConfigError: names the two folders and the first setting that differs, or the repeated seed.
    """
    def settings(reader: DemonstrationReader) -> dict[str, Any]:
        own = reader.info.get("memstream", {})
        kept = {key: value for key, value in reader.info.get("features", {}).items()  # the expert's inputs: no policy's
                if key != ENVIRONMENT_STATE and (camera is None or not key.startswith("observation.images.")
                                                 or key == f"observation.images.{camera}")}
        return {"task": own.get("task"), "camera housing": own.get("camera_housing"), "expert": own.get("expert"), **kept}

    first, seen = readers[0], {}
    ours = settings(first)
    for reader in readers:
        theirs = settings(reader)
        for name, expected in ours.items():
            value = theirs.get(name)
            if value != expected:
                if isinstance(value, dict) and isinstance(expected, dict):  # name only the entries that differ
                    keys = [k for k in {**expected, **value} if expected.get(k) != value.get(k)]
                    expected, value = {k: expected.get(k) for k in keys}, {k: value.get(k) for k in keys}
                raise ConfigError(f"demonstration folders {str(first.root)!r} and {str(reader.root)!r} differ in "
                                  f"{name} ({expected!r} vs {value!r})",
                                  "Join folders collected for the same task with the same write_demonstrations settings")
        missing = [name for name in theirs if name not in ours]
        if missing:
            raise ConfigError(f"demonstration folders {str(first.root)!r} and {str(reader.root)!r} differ in "
                              f"{missing[0]} (only in the second)",
                              "Join folders collected for the same task with the same write_demonstrations settings")
        for record in reader.records:
            seed = record.get("seed")
            if seed in seen:
                raise ConfigError(f"simulator seed {seed} is in both {str(seen[seed])!r} and {str(reader.root)!r}: "
                                  "the same episode would be used twice",
                                  "Collect each folder from its own seed range (write_demonstrations(seed=...))")
            seen[seed] = reader.root


def merge_demonstrations(root: str | Path, sources: Sequence[str | Path], progress: bool | None = False) -> dict[str, Any]:
    """Join demonstration folders of one task (e.g. written in parallel from disjoint seed ranges)
    into one new folder, their episodes renumbered in the order given; the sources are left as
    they are. Checked with :func:`check_joinable` before anything is written; DAgger folders
    (``write_demonstrations(driver=...)``) merge only with folders driven the same way, and folders
    only with folders whose expert labelled the same way (``memstream.expert_labels``). The expert's
    stored inputs (``observation.environment_state``) are kept where every source has them.

    Returns:
        The new folder's ``meta/info.json`` content.
    """
    if not sources:
        raise ConfigError("no demonstration folder to merge", "Pass at least one folder written by write_demonstrations")
    readers = [read_demonstrations(source) for source in sources]
    check_joinable(readers)
    for key, what in (("dagger", "were driven"), ("expert_labels", "were labelled")):
        records = [reader.info.get("memstream", {}).get(key) for reader in readers]
        if any(record != records[0] for record in records):  # one folder has one record of who drove / labelled
            other = next(k for k, record in enumerate(records) if record != records[0])
            raise ConfigError(f"demonstration folders {str(readers[0].root)!r} and {str(readers[other].root)!r} {what} "
                              f"differently ({records[0]!r} vs {records[other]!r}): one merged folder would record one "
                              "of them", "Train on them side by side (vla-train --demos A B) instead of merging")
    root = Path(root)
    if (root / "meta" / "info.json").exists():
        raise ConfigError(f"{str(root)!r} already holds a dataset", "Pick a new folder or delete the old one")
    own = readers[0].info.get("memstream", {})
    writer = _writer_like(root, readers[0])
    drop = [] if all(ENVIRONMENT_STATE in reader.info["features"] for reader in readers) else [ENVIRONMENT_STATE]
    for name in drop:
        writer.info["features"].pop(name, None)
    for key in ("expert", "expert_labels", "dagger"):
        if key in own:
            writer.info["memstream"][key] = own[key]
    with progress_bar("merge demonstrations", sum(len(r) for r in readers), unit="episodes", show=progress) as bar:
        for reader in readers:
            for i in range(len(reader)):
                writer.copy_episode(reader, i, drop=drop)
                bar.advance()
    return writer.info


def _writer_like(root: Path, reader: DemonstrationReader) -> _DatasetWriter:
    """A writer of a new folder ``root`` with ``reader``'s task, rendering, cameras and features as
    stored (older datasets lack ``video.g``); the ``memstream`` records beyond those are the caller's."""
    own = reader.info.get("memstream", {})
    videos = [key for key, feature in reader.info["features"].items() if feature["dtype"] == "video"]
    writer = _DatasetWriter(root, own.get("task", ""), (reader.tasks or [""])[0],
                            int(reader.info["features"][videos[0]]["shape"][0]) if videos else 0,
                            tuple(key.removeprefix("observation.images.") for key in videos),
                            bool(own.get("camera_housing", False)), own.get("camera_params"))
    writer.info["features"] = json.loads(json.dumps(reader.info["features"]))
    return writer


def relabel_demonstrations(root: str | Path, source: str | Path, progress: bool | None = False) -> dict[str, Any]:
    """Copy the folder ``source`` into the new folder ``root`` with every frame's ``action`` labelled
    again by the scripted expert as it is now, from the inputs it acted on when the folder was
    collected (``observation.environment_state``): a changed expert's labels for DAgger rounds
    already collected, without the simulator. The rollouts stay as they were driven (states,
    frames, videos copied byte for byte, success); ``meta/info.json`` records the expert now
    (``memstream.expert``, ``expert_labels``) and ``memstream.relabelled``: the source folder, the
    records it had, and how many frames' labels changed. The source is left as it is.

    Raises:
        ConfigError: ``source`` stores no expert inputs (folders collected before stop 51: collect
            them again), stores them under other names than this task's expert reads, or ``root``
            already holds a dataset.

    Returns:
        The new ``meta/info.json`` content plus ``changed_frames``, ``frames`` and ``changed_episodes``.
    """
    pa = _pyarrow()
    reader = read_demonstrations(source)
    own = reader.info.get("memstream", {})
    task = resolve_task(own.get("task", ""))
    stored = reader.info["features"].get(ENVIRONMENT_STATE)
    if stored is None:
        raise ConfigError(f"{str(reader.root)!r} stores no {ENVIRONMENT_STATE} (the expert's inputs; folders written "
                          "before stop 51 lack it), so its frames cannot be labelled again without the simulator",
                          "Collect that round again with vla-collect")
    names = ENVIRONMENT_STATE_NAMES[task.kind]
    if list(stored.get("names") or []) != list(names):
        raise ConfigError(f"{str(reader.root)!r} stores the expert's inputs as {stored.get('names')!r}; the "
                          f"{task.name} expert reads {list(names)!r}", "Collect that round again with vla-collect")
    root = Path(root)
    if (root / "meta" / "info.json").exists():
        raise ConfigError(f"{str(root)!r} already holds a dataset", "Pick a new folder or delete the old one")
    writer = _writer_like(root, reader)
    if "dagger" in own:
        writer.info["memstream"]["dagger"] = own["dagger"]
    writer.info["memstream"].update(expert_records(task.kind))
    record = writer.info["memstream"]["relabelled"] = {  # kept current: _commit writes it with each episode
        "source": str(reader.root), **{key: own.get(key) for key in ("expert", "expert_labels")},
        "changed_frames": 0, "frames": 0, "changed_episodes": 0}

    def relabel(table: Any) -> Any:
        inputs = np.asarray(table.column(ENVIRONMENT_STATE).to_pylist(), dtype=np.float64)
        steps = np.asarray(table.column("frame_index").to_pylist(), dtype=np.int64)
        before = np.asarray(table.column("action").to_pylist(), dtype=np.float32)
        after = np.stack([expert_action(task.kind, row, int(step)) for row, step in zip(inputs, steps, strict=True)])
        changed = int(np.any(after != before, axis=1).sum())
        record["changed_frames"] += changed
        record["frames"] += len(after)
        record["changed_episodes"] += changed > 0
        column = pa.array(list(after.astype(np.float32)), pa.list_(pa.float32(), ACTION_DIM))
        return table.set_column(table.schema.get_field_index("action"), "action", column)

    with progress_bar("relabel demonstrations", len(reader), unit="episodes", show=progress) as bar:
        for i in range(len(reader)):
            writer.copy_episode(reader, i, rewrite=relabel)
            bar.advance()
    return {**writer.info, **{key: record[key] for key in ("changed_frames", "frames", "changed_episodes")}}


def _decode(path: Path) -> np.ndarray:
    import av

    try:
        with av.open(str(path)) as container:
            return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    except (OSError, av.error.FFmpegError) as error:
        raise MemstreamError(f"cannot decode {str(path)!r}: {error}", "Re-collect that episode") from error
