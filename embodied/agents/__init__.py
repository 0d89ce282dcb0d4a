"""Navigation agents with habitat's contract (``reset()``, ``act(observations) -> action``), evaluated.

:class:`MapMemoryAgent` runs on the project's memories: object ids from the tracking memory
(:class:`ObjectTracks`), static occupancy and the objects' positions from the 3D memory fed with depth
and pose (:class:`MemoryOccupancy` is its top-down grid), and an episodic log of the history's
interactions keyed by those ids; it resolves FindingDory-style instructions from them and plans on
the grid. Its baselines (``wiped``, ``retrieval``, ``oracle``) differ in one thing each.
:class:`MazeMemoryAgent` plays Memory Maze: targets detected classically in RGB-D, remembered by colour
(``no_memory``: the same agent forgetting them every step).
:func:`evaluate_nav` scores agents with habitat-lab's and FindingDory's metrics; ``memstream nav-eval``
runs it from the command line. Importing this package loads nothing until a name is used.

Example (needs ``miniworld`` and EGL):
    >>> from memstream.embodied.agents import evaluate_nav
    >>> result = evaluate_nav("miniworld", "findingdory", ["memory"], episodes=1, options={"image_size": 64})
    >>> sorted(result["summary"]["memory"])[:3]
    ['agent_share', 'agent_steps_per_s', 'crashed']
"""

from memstream.streaming.lazy import lazy_attributes

_LAZY = {  # name -> module that defines it, imported on first use
    "AGENT_MODES": "memstream.embodied.agents.memory_agent",
    "MapMemoryAgent": "memstream.embodied.agents.memory_agent",
    "MAZE_AGENT_MODES": "memstream.embodied.agents.maze_agent",
    "MazeMemoryAgent": "memstream.embodied.agents.maze_agent",
    "TargetDetector": "memstream.embodied.agents.maze_perception",
    "TargetMemory": "memstream.embodied.agents.maze_perception",
    "EpisodicMemory": "memstream.embodied.agents.instructions",
    "resolve": "memstream.embodied.agents.instructions",
    "Navigator": "memstream.embodied.agents.navigator",
    "ObjectTracks": "memstream.embodied.agents.object_tracks",
    "MemoryOccupancy": "memstream.embodied.agents.memory_map",
    "Interaction": "memstream.embodied.agents.memory_agent",
    "OccupancyMap": "memstream.embodied.agents.mapping",
    "HabitatAgentAdapter": "memstream.embodied.agents.habitat_adapter",
    "run_habitat_benchmark": "memstream.embodied.agents.habitat_adapter",
    "evaluate_nav": "memstream.embodied.agents.evaluate",
    "run_episode": "memstream.embodied.agents.evaluate",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = sorted(_LAZY)
