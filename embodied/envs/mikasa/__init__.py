"""MIKASA-Robo (ManiSkill3) memory tasks behind the env protocol: adapter, experts, demonstrations.

Needs the ``mikasa`` extra plus ``pip install --no-deps mikasa-robo-suite==1.0.0`` and a Vulkan
device (Mesa 25's lavapipe on a CPU machine: ``tests/system_deps.sh``); importing this package
imports neither. :func:`export_lerobot` writes demonstrations in LeRobot's v3.0 format.

Example::

    env = make_mikasa_env("RememberColor3", seed=0)
    obs = env.reset()
    obs, reward, terminated, truncated, info = env.step(env.expert_actions())
"""

from memstream.embodied.envs.mikasa.dataset import (DemonstrationReader, check_joinable, merge_demonstrations, read_demonstrations,
                                                    relabel_demonstrations, write_demonstrations)
from memstream.embodied.envs.mikasa.env import (CAMERAS, ENVIRONMENT_STATE_NAMES, EVAL_SEED, MikasaConfig, MikasaEnv, catch_geometry,
                                               catch_step_so_far, expert_action, make_mikasa_env)
from memstream.embodied.envs.mikasa.experts import intercept_action, remember_color_action
from memstream.embodied.envs.mikasa.lerobot_export import export_lerobot
from memstream.embodied.envs.mikasa.tasks import MIKASA_TASKS, NEEDS_ASSETS, MikasaTask, resolve_task

__all__ = [
    "CAMERAS",
    "DemonstrationReader",
    "ENVIRONMENT_STATE_NAMES",
    "EVAL_SEED",
    "MIKASA_TASKS",
    "NEEDS_ASSETS",
    "MikasaConfig",
    "MikasaEnv",
    "MikasaTask",
    "catch_geometry",
    "catch_step_so_far",
    "check_joinable",
    "expert_action",
    "export_lerobot",
    "intercept_action",
    "make_mikasa_env",
    "merge_demonstrations",
    "read_demonstrations",
    "relabel_demonstrations",
    "remember_color_action",
    "resolve_task",
    "write_demonstrations",
]
