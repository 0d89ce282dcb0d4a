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

import difflib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

from memstream.streaming.errors import ConfigError


@dataclass(frozen=True)
class MikasaTask:
    """One runnable task.

    Attributes:
        name: MemoryVLA's name (the suite id without ``-VLA-v0``). suite_id: the gymnasium id
            registered by ``mikasa_robo_suite.vla.memory_envs``.
        kind: ``"remember_color"``, ``"intercept"``, ``"rotate"`` (the instruction names each
            episode's angle) or ``"other"``: which privileged state applies.
        colours: candidate cubes (RememberColor), 0 otherwise.
        max_episode_steps: the suite's time limit, control steps (20 Hz).
        freeze_cue_phase: actions are zeroed while the cue and the empty table are shown (the
            suite's ``CurriculumPhaseNoopActionWrapper`` in its canonical VLA wrapper chain).
        chance_success_rate: success of a policy that acts perfectly but forgot the cue (one over
            the objects offered at the choice); None where the suite gives no closed form.
        instruction: the suite's ``LANGUAGE_INSTRUCTION`` (Rotate: the template; the env's
            ``task`` observation names the episode's angle).
        expert: a scripted expert exists (``expert_actions``, ``vla-collect``).
    """

    name: str
    suite_id: str
    kind: str
    colours: int
    max_episode_steps: int
    freeze_cue_phase: bool
    chance_success_rate: float | None
    instruction: str
    expert: bool = False


_TOUCH = "Observe the cube's color, wait, then touch the cube of the same color."
# 0.0 for Intercept: the ball stays visible, so "forgot the cue" has no closed form; kept at 0.0
# (not None) because benchmark tables written before format it as a number.
_INTERCEPT = "Intercept the rolling ball by moving to its path and deflecting it toward the target."
_VLA = "-VLA-v0"

#: The tasks with scripted experts (the four MemoryVLA evaluates).
_EXPERT_TASKS: dict[str, MikasaTask] = {
    **{f"RememberColor{n}": MikasaTask(f"RememberColor{n}", f"RememberColor{n}{_VLA}", "remember_color", n,
                                       25, True, 1.0 / n, _TOUCH, expert=True) for n in (3, 5, 9)},
    "InterceptMedium": MikasaTask("InterceptMedium", f"InterceptMedium{_VLA}", "intercept", 0, 60, False,
                                  0.0, _INTERCEPT, expert=True),
}

# mikasa-robo-suite 1.0.0's VLA ids without the ShellGames: name -> the ``max_episode_steps`` its
# ``register_env`` gives (tests/embodied/envs/test_mikasa_pure.py checks this against the installed suite).
_SHORT, _LONG = 25, 600
_STEPS: dict[str, int] = {
    **{f"{family}{n}": _SHORT for family in ("RememberColor", "RememberShape", "FindImposterColor",
                                             "FindImposterShape") for n in (3, 5, 9)},
    **{f"{family}{n}-Long": _LONG for family in ("RememberColor", "RememberShape") for n in (3, 5, 9)},
    **{f"RememberShapeAndColor{g}": _SHORT for g in ("3x2", "3x3", "5x3")},
    **{f"RememberShapeAndColor{g}-Long": _LONG for g in ("3x2", "3x3", "5x3")},
    "FindImposterShapeAndColor3x2": 25, "FindImposterShapeAndColor3x3": 25, "FindImposterShapeAndColor5x3": 40,
    **{f"Intercept{speed}": 60 for speed in ("Slow", "Medium", "Fast")},
    **{f"InterceptGrab{speed}": 60 for speed in ("Slow", "Medium", "Fast")},
    "RotateLenientPos": 60, "RotateLenientPosNeg": 60, "RotateStrictPos": 90, "RotateStrictPosNeg": 90,
    "TakeItBack": 60,
    **{f"{family}{n}": 400 for family in ("BunchOfColors", "SeqOfColors", "ChainOfColors") for n in (3, 5, 7)},
    **{f"BunchOfColors{n}-Long": 700 for n in (3, 5, 7)},
    **{f"{family}{n}-Long": steps for family in ("SeqOfColors", "ChainOfColors")
       for n, steps in ((3, 800), (5, 1000), (7, 1200))},
    "GatherAndRecall1": 200, "GatherAndRecall3": 400, "GatherAndRecall5": 600, "GatherAndRecall7": 800,
    "GatherAndRecall9": 1000,
    **{f"BatteriesCheckerEasy-{n}": steps for n, steps in ((3, 540), (6, 1080), (9, 1620), (12, 2160), (15, 2400))},
    **{f"BatteriesCheckerHard-{n}": steps for n, steps in ((3, 1080), (6, 2160), (9, 3240), (12, 4320), (15, 4320))},
    "BlinkCountButtonPressEasy": 150, "BlinkCountButtonPressMedium": 200, "BlinkCountButtonPressHard": 300,
    **{f"BlinkCountButtonPress{level}-Long": 1200 for level in ("Easy", "Medium", "Hard")},
    "TraceShapeEasy": 250, "TraceShapeMedium": 300, "TraceShapeHard": 350,
    **{f"TraceShapeSeq{level}": 1500 for level in ("Easy", "Medium", "Hard")},
    "TimedTransferEasy": 200, "TimedTransferMedium": 250, "TimedTransferHard": 300,
    "TimedTransferEasy-Long": 600, "TimedTransferMedium-Long": 900, "TimedTransferHard-Long": 1200,
}

# (name prefix, kind, instruction); the first matching prefix applies (longer prefixes first).
_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("RememberShapeAndColor", "other", "Observe the object's shape and color, wait, then touch the object of the same "
                                       "shape and color."),
    ("RememberShape", "other", "Observe the object's shape, wait, then touch the object of the same shape."),
    ("RememberColor", "remember_color", _TOUCH),
    ("FindImposterShapeAndColor", "other", "Observe the objects shown, wait, then touch the object whose shape and "
                                           "color combination was not present before."),
    ("FindImposterShape", "other", "Observe the shapes shown, wait, then touch the object whose shape was not "
                                   "present before."),
    ("FindImposterColor", "other", "Observe the cubes shown, wait, then touch the cube whose color was not present "
                                   "before."),
    ("InterceptGrab", "other", "Intercept the rolling ball and grasp it to stop it."),
    ("Intercept", "intercept", _INTERCEPT),
    ("RotateLenient", "rotate", "Rotate the peg by {angle_deg} degrees to match the target angle."),
    ("RotateStrict", "rotate", "Rotate the peg by {angle_deg} degrees to match the target angle while keeping the "
                               "center of the peg in place."),
    ("TakeItBack", "other", "Push the cube onto the red target, and when the target changes color, return the cube to "
                            "its original position."),
    # the suite's SeqOfColors reuses BunchOfColors' sentence (its order does not matter either)
    ("BunchOfColors", "other", "Observe which colored cubes appear during the cue, wait, then touch all of them in any "
                               "order and press the center button."),
    ("SeqOfColors", "other", "Observe which colored cubes appear during the cue, wait, then touch all of them in any "
                             "order and press the center button."),
    ("ChainOfColors", "other", "Observe which colored cubes appear during the cue, wait, then touch all of them in the "
                               "same order as the cubes were shown and press the center button."),
    ("GatherAndRecall", "other", "Move all cubes onto the disc. A lamp will briefly flash while you work. After all "
                                 "cubes are placed, press the button matching the flash color."),
    ("BatteriesCheckerEasy", "other", "Find all working batteries by inserting each one into the socket, observing "
                                      "the lamp result, and then pressing the button to confirm."),
    ("BatteriesCheckerHard", "other", "Find all working batteries by inserting each one into the socket, observing "
                                      "the lamp result, returning it from the socket to its initial slot, and then "
                                      "pressing the button to confirm."),
    ("BlinkCountButtonPress", "other", "Count how many times the blue lamp blinks, press the red button exactly that "
                                       "many times when the red lamp turns green, then press the black button to "
                                       "submit your answer."),
    ("TraceShapeSeq", "other", "Watch the red cube trace a sequence of shapes. When the lamp turns green, pick up the "
                               "green cube and trace the same sequence in order. After finishing all shapes, press the "
                               "button to submit your answer."),
    ("TraceShape", "other", "Watch the red cube trace a shape on the table. When the lamp turns green, pick up the "
                            "green cube and trace exactly the same shape."),
    ("TimedTransfer", "other", "When the white lamp turns green, start counting steps from that exact moment. Move "
                               "the blue cube from the green disc to the red disc exactly on step {delay} of that "
                               "count."),
)
_DELAY_STEPS = {"Easy": 100, "Medium": 150, "Hard": 200, "Easy-Long": 300, "Medium-Long": 500, "Hard-Long": 1000}
#: Families whose short variants freeze the arm during the cue (the suite's canonical wrapper chain).
_FROZEN_CUE = ("RememberShapeAndColor", "RememberShape", "RememberColor", "FindImposter")


def _chance(name: str) -> float | None:
    """One over the objects offered at the choice (Remember*, FindImposter*: ``3``, ``5``, ``9`` or
    shapes x colours ``3x2``); None for the tasks without a closed form."""
    if not name.startswith(("Remember", "FindImposter")):
        return None
    match = re.search(r"(\d+)(?:x(\d+))?(?:-Long)?$", name)
    assert match is not None, name
    return 1.0 / (int(match.group(1)) * int(match.group(2) or 1))


def _suite_task(name: str, steps: int) -> MikasaTask:
    prefix, kind, instruction = next(family for family in _FAMILIES if name.startswith(family[0]))
    if prefix == "TimedTransfer":
        instruction = instruction.format(delay=_DELAY_STEPS[name.removeprefix(prefix)])
    colours = int(name.removeprefix(prefix).split("-")[0]) if kind == "remember_color" else 0
    return MikasaTask(name, f"{name}{_VLA}", kind, colours, steps,
                      freeze_cue_phase=name.startswith(_FROZEN_CUE) and not name.endswith("-Long"),
                      chance_success_rate=_chance(name), instruction=instruction)


#: Every runnable task, by MemoryVLA-style name; ``expert`` marks the four with scripted experts.
MIKASA_TASKS: dict[str, MikasaTask] = {name: _EXPERT_TASKS.get(name) or _suite_task(name, steps)
                                       for name, steps in _STEPS.items()}

#: Every id that needs the YCB object download (ManiSkill fetches it from the network on first use);
#: their ``-Long`` variants too.
NEEDS_ASSETS = ("ShellGameTouch", "ShellGamePush", "ShellGamePick", "ShellGameShuffleTouch",
                "ShellGameColorLampTouch", "ShellGameShuffleColorLampTouch")
EXPERT_TASKS = tuple(_EXPERT_TASKS)
#: Families whose scenes build the suite's colour-switch lamp from ``vla/utils/objects/low_poly_light_bulb.glb``,
#: a mesh mikasa-robo-suite 1.0.0's wheel does not ship (ManiSkill stops with "cannot make canonical path").
NEEDS_LAMP_MESH = ("GatherAndRecall", "BatteriesChecker", "BlinkCountButtonPress", "TraceShape", "TimedTransfer")
LAMP_MESH = "vla/utils/objects/low_poly_light_bulb.glb"


def lamp_mesh_path() -> Path | None:
    """Where the installed suite keeps the lamp mesh (whether or not it is there); None without the suite.
    Finds the package without importing it."""
    spec = importlib.util.find_spec("mikasa_robo_suite")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / LAMP_MESH


def resolve_task(name: str) -> MikasaTask:
    """The task for a MemoryVLA name or a suite id (``RememberColor3`` or ``RememberColor3-VLA-v0``).

    Raises:
        ConfigError: a ShellGame id (needs downloaded assets), a lamp task whose mesh the installed
            suite lacks (:data:`NEEDS_LAMP_MESH`), an RL id (``-v0`` without ``VLA``;
            RememberColor's cannot be solved), or an unknown name (with the nearest names).
    """
    if not isinstance(name, str):
        raise ConfigError(f"a MIKASA-Robo task name must be a str, got {type(name).__name__}",
                          f"Pass a name such as {', '.join(EXPERT_TASKS)}")
    task = MIKASA_TASKS.get(name) or (MIKASA_TASKS.get(name.removesuffix(_VLA)) if name.endswith(_VLA) else None)
    if task is not None:
        mesh = lamp_mesh_path()
        if task.name.startswith(NEEDS_LAMP_MESH) and mesh is not None and not mesh.exists():
            raise ConfigError(f"MIKASA-Robo task {name!r} cannot be built: its lamp needs {str(mesh)!r}, which the "
                              "installed mikasa-robo-suite does not ship (1.0.0's wheel leaves vla/utils/objects/ out)",
                              f"Copy low_poly_light_bulb.glb from the suite's source tree there, or pick another "
                              f"task, e.g. {', '.join(EXPERT_TASKS)}")
        return task
    base = name.removesuffix(_VLA).removesuffix("-v0")
    if base.startswith("ShellGame"):
        raise ConfigError(f"MIKASA-Robo task {name!r} is not run by this adapter: the ShellGame tasks need "
                          "ManiSkill's YCB object assets, a network download that is not in the pip packages",
                          f"Pick another task, e.g. {', '.join(EXPERT_TASKS)} (all: MIKASA_TASKS)")
    if base in MIKASA_TASKS:
        why = ("cannot be solved in mikasa-robo-suite 1.0.0 (its cubes never reappear after the memory phase)"
               if base.startswith("RememberColor") else "is the suite's RL variant, which this adapter does not run")
        raise ConfigError(f"MIKASA-Robo id {name!r} {why}",
                          f"Use {base!r} (the suite's VLA benchmark id {MIKASA_TASKS[base].suite_id})")
    near = difflib.get_close_matches(base, list(MIKASA_TASKS), n=5, cutoff=0.5) or list(EXPERT_TASKS)
    raise ConfigError(f"unknown MIKASA-Robo task {name!r} ({len(MIKASA_TASKS)} runnable: "
                      f"memstream.embodied.envs.mikasa.MIKASA_TASKS)", f"Did you mean: {', '.join(near)}?")
