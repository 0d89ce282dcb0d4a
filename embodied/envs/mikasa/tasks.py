"""The MIKASA-Robo tasks this adapter runs, by name, and the ids it refuses with a reason.

Names are MemoryVLA's task names (``RememberColor3``, ...). Each maps to the suite's **VLA** id
(``RememberColor3-VLA-v0``): the variant the suite's own VLA benchmark
(``mikasa_robo_suite.vla.benchmarking``) evaluates with end-effector delta-pose control. The suite's
RL ids (``RememberColor3-v0``) are refused for RememberColor: in ``mikasa-robo-suite`` 1.0.0 their
``evaluate()`` re-reads the cube poses every step, so the cubes hidden at z = 1000 m never come
back and no policy can succeed (the GitHub version kept the shuffled poses from the reset).

This module imports no simulator: it is the pure part the tests check everywhere.

Example:
    >>> resolve_task("RememberColor5").suite_id
    'RememberColor5-VLA-v0'
    >>> resolve_task("ShellGameTouch")
    Traceback (most recent call last):
    ...
    memstream.streaming.errors.ConfigError: MIKASA-Robo task 'ShellGameTouch' needs the YCB assets ...
"""

from __future__ import annotations

from dataclasses import dataclass

from memstream.streaming.errors import ConfigError


@dataclass(frozen=True)
class MikasaTask:
    """One runnable task.

    Attributes:
        name: MemoryVLA's name. suite_id: the gymnasium id registered by ``mikasa_robo_suite``.
        kind: ``"remember_color"`` or ``"intercept"`` (which expert and privileged state apply).
        colours: candidate cubes (RememberColor), 0 otherwise.
        max_episode_steps: the suite's time limit, control steps (20 Hz).
        freeze_cue_phase: actions are zeroed while the cue and the empty table are shown (the
            suite's ``CurriculumPhaseNoopActionWrapper`` in its canonical VLA wrapper chain).
        chance_success_rate: success of a policy that acts perfectly but forgot the cue.
        instruction: the suite's ``LANGUAGE_INSTRUCTION``.
    """

    name: str
    suite_id: str
    kind: str
    colours: int
    max_episode_steps: int
    freeze_cue_phase: bool
    chance_success_rate: float
    instruction: str


_TOUCH = "Observe the cube's color, wait, then touch the cube of the same color."
_INTERCEPT = "Observe the ball's motion and push it into the target zone."

MIKASA_TASKS: dict[str, MikasaTask] = {
    **{f"RememberColor{n}": MikasaTask(f"RememberColor{n}", f"RememberColor{n}-VLA-v0", "remember_color", n,
                                       25, True, 1.0 / n, _TOUCH) for n in (3, 5, 9)},
    # Chance for Intercept: the ball stays visible, so a memoryless policy is not bound to fail; the
    # suite's papers report it as a "memory to estimate velocity" task. 0.0 marks "no closed form".
    "InterceptMedium": MikasaTask("InterceptMedium", "InterceptMedium-VLA-v0", "intercept", 0, 60, False,
                                  0.0, _INTERCEPT),
}

#: Every id that needs the YCB object download (ManiSkill fetches it from the network on first use).
NEEDS_ASSETS = ("ShellGameTouch", "ShellGamePush", "ShellGamePick", "ShellGameShuffleTouch",
                "ShellGameColorLampTouch", "ShellGameShuffleColorLampTouch")


def resolve_task(name: str) -> MikasaTask:
    """The task for a MemoryVLA name or a suite id (``RememberColor3`` or ``RememberColor3-VLA-v0``).

    Raises:
        ConfigError: a ShellGame id (needs downloaded assets), the broken RL RememberColor ids, or
            an unknown name; the message lists the runnable names.
    """
    known = ", ".join(MIKASA_TASKS)
    if not isinstance(name, str):
        raise ConfigError(f"a MIKASA-Robo task name must be a str, got {type(name).__name__}",
                          f"Pass one of: {known}")
    if name in MIKASA_TASKS:
        return MIKASA_TASKS[name]
    by_id = {task.suite_id: task for task in MIKASA_TASKS.values()}
    if name in by_id:
        return by_id[name]
    base = name.split("-")[0]
    if base.startswith("ShellGame"):
        raise ConfigError(f"MIKASA-Robo task {name!r} needs the YCB assets, which ManiSkill downloads "
                          "on first use (they are not in the pip packages)",
                          f"Run `python -m mani_skill.utils.download_asset ycb` where the network allows, or "
                          f"pick one of: {known}")
    if base in MIKASA_TASKS:
        why = ("cannot be solved in mikasa-robo-suite 1.0.0 (its cubes never reappear after the memory phase)"
               if base.startswith("RememberColor") else "is not the variant this adapter runs")
        raise ConfigError(f"MIKASA-Robo id {name!r} {why}",
                          f"Use {base!r} (the suite's VLA benchmark id {MIKASA_TASKS[base].suite_id})")
    raise ConfigError(f"unknown MIKASA-Robo task {name!r}", f"Pick one of: {known}")
