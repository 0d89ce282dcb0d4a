"""Memory-dependent embodied tasks with rendered frames, scripted experts, demonstrations, scoring.

Tasks (registry :data:`TASKS`): ``cue_choice`` (T-maze, remember a lamp's colour, chance 1/2) and
``order`` (remember the order three pads lit up in, chance 1/6). Envs are vectorised over ``B``
slots with auto-reset; observations use LeRobot keys.

Example:
    >>> from memstream.embodied.envs import collect_demonstrations, evaluate, make_env
    >>> env = make_env("order", num_envs=4, seed=0)
    >>> obs = env.reset()
    >>> sorted(obs)
    ['episode_index', 'episode_start', 'frame_index', 'observation.image', 'observation.state', 'task']
    >>> data = collect_demonstrations("order", num_episodes=4, seed=0)
    >>> data.num_episodes, data.images.shape[1:], bool(data.success.all())
    (4, (64, 64, 3), True)
    >>> stand_still = lambda obs: [[0.0, 0.0]] * len(obs["task"])  # batched obs -> actions (B, 2)
    >>> evaluate(stand_still, "order", num_episodes=2)["truncation_rate"]
    1.0
"""

from memstream.embodied.envs.arena import AGENT_RADIUS
from memstream.embodied.envs.base import VectorEnv
from memstream.embodied.envs.config import EnvConfig
from memstream.embodied.envs.cue_choice import (  # registers "cue_choice"
    CueChoiceConfig,
    CueChoiceEnv,
    cue_choice_expert,
)
from memstream.embodied.envs.cue_maze import CueMazeConfig, CueMazeEnv, collect_cue_demonstrations
from memstream.embodied.envs.demos import collect_demonstrations
from memstream.embodied.envs.evaluate import evaluate, evaluate_env
from memstream.embodied.envs.memory_maze_env import MemoryMazeConfig, MemoryMazeEnv
from memstream.embodied.envs.miniworld_env import ACTIONS, FindingDoryConfig, FindingDoryEnv
from memstream.embodied.envs.nav import NAV_ENVS, NavEnv, make_nav_env
from memstream.embodied.envs.navmetrics import NavMetrics
from memstream.embodied.envs.order import OrderConfig, OrderEnv, order_expert  # registers "order"
from memstream.embodied.envs.protocol import Agent, run_agent, unbatch
from memstream.embodied.envs.registry import TASKS, expert_actions, make_env
from memstream.embodied.envs.types import EnvSpec, EpisodeDataset, EvaluationResult, Observation, StepInfo

__all__ = [
    "ACTIONS",
    "AGENT_RADIUS",
    "NAV_ENVS",
    "TASKS",
    "Agent",
    "CueChoiceConfig",
    "CueChoiceEnv",
    "CueMazeConfig",
    "CueMazeEnv",
    "EnvConfig",
    "EnvSpec",
    "EpisodeDataset",
    "EvaluationResult",
    "FindingDoryConfig",
    "FindingDoryEnv",
    "MemoryMazeConfig",
    "MemoryMazeEnv",
    "NavEnv",
    "NavMetrics",
    "Observation",
    "OrderConfig",
    "OrderEnv",
    "StepInfo",
    "VectorEnv",
    "collect_cue_demonstrations",
    "collect_demonstrations",
    "cue_choice_expert",
    "evaluate",
    "evaluate_env",
    "expert_actions",
    "make_env",
    "make_nav_env",
    "order_expert",
    "run_agent",
    "unbatch",
]
