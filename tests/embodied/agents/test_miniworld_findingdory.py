"""FindingDory-style episodes in MiniWorld: habitat's observations, depth and pose that agree with the
world, a history the memory agent reads right, and an oracle that reaches its goal (needs miniworld + EGL)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

if importlib.util.find_spec("miniworld") is None:  # not importorskip: a bare import would open an X display
    pytest.skip("miniworld is not installed (pip install 'memstream[sim]')", allow_module_level=True)

from memstream.embodied.agents.evaluate import evaluate_nav, run_episode
from memstream.embodied.agents.mapping import backproject, colour_masks
from memstream.embodied.agents.memory_agent import MapMemoryAgent
from memstream.embodied.envs.miniworld_env import FindingDoryConfig, FindingDoryEnv


@pytest.fixture(scope="module")
def env():
    environment = FindingDoryEnv(FindingDoryConfig(image_size=64))
    yield environment
    environment.close()


def test_observations_have_habitats_names_types_and_a_depth_that_places_objects_where_they_are(env):
    obs = env.reset(seed=3)
    assert obs["rgb"].dtype == np.uint8 and obs["rgb"].shape == (64, 64, 3)
    assert obs["depth"].dtype == np.float32 and obs["depth"].shape == (64, 64, 1)
    np.testing.assert_allclose(obs["gps"], [0.0, 0.0], atol=1e-6)  # the first pose is the origin
    assert obs["compass"].shape == (1,) and obs["phase"] == "history" and obs["instruction"] == ""
    checked = 0
    for _ in range(60):  # the tour's first look around: check every object that fills enough pixels
        obs = env.step("stop")
        for colour, mask in colour_masks(obs["rgb"]).items():
            if mask.sum() < 20:
                continue
            depth = np.where(mask[..., None], obs["depth"], 0.0)
            points = backproject(depth, obs["gps"], float(obs["compass"][0]), 60.0, 1.5, stride=1)
            index = [o.colour for o in env.layout.objects].index(colour)
            truth = env.to_gps(np.array(env.layout.objects[index].xz))
            assert (
                np.linalg.norm(np.median(points[:, :2], axis=0) - truth) < 0.6
            )  # the visible face, ~0.3 off
            checked += 1
    assert checked > 0


def test_the_memory_agent_reads_which_objects_were_picked_in_order_and_the_oracle_reaches_its_goal(env):
    agent = MapMemoryAgent("memory")
    obs = env.reset(seed=2)
    agent.reset()
    while obs["phase"] == "history":
        obs = env.step(agent.act(obs))
    assert [c for c, _ in agent.picks] == [env.layout.objects[i].colour for i in env.picked]
    assert len(env.picked) >= 2 and obs["instruction"] and env.template is not None
    oracle = MapMemoryAgent("oracle", goal_oracle=env.goals_gps)
    row = run_episode(env, oracle, seed=5)
    assert row["high_level_success"] == 1.0 and row["success"] == 1.0 and 0.3 < row["spl"] <= 1.0


def test_a_crashing_episode_is_recorded_with_its_seed_and_the_run_goes_on():
    class Flaky(MapMemoryAgent):
        """The wiped agent, whose first episode raises on its fourth frame."""

        resets = 0

        def reset(self) -> None:
            super().reset()
            self.resets += 1

        def act(self, observations):
            if self.resets == 2 and observations["step"] == 3:  # reset once when built, once per episode
                raise RuntimeError("sensor glitch")
            return super().act(observations)

    result = evaluate_nav(
        "miniworld",
        "findingdory",
        ["flaky"],
        episodes=2,
        seed=11,
        options={"image_size": 32, "max_task_steps": 20},
        agent_factory=lambda name, env, seed: Flaky("wiped", seed=seed),
    )
    rows = result["episodes"]["flaky"]
    assert rows[0]["ok"] is False and rows[0]["seed"] == 11 and "sensor glitch" in rows[0]["error"]
    assert rows[1]["ok"] is True and rows[1]["seed"] == 12
    assert result["summary"]["flaky"]["crashed"] == 1 and result["summary"]["flaky"]["success"] <= 0.5
