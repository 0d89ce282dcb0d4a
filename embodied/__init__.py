"""memstream's embodied side: the 3D memory, the perceptual-cognitive bank, tasks, and policies.

Subpackages:
    map3d: the Mem4D-style 3D memory, :class:`DualMemory3D` (a static TSDF map in open3d beside a
        dynamics memory of moving objects), pose registration, monocular depth, map metrics, the
        ``map3d`` stage and the ``reconstruct`` command.
    scene: the scene memory, :class:`SceneMemory`: tracked objects (ids, names) placed in 3D over
        time, bounded, answering where / when / last moved / near / best frames (numpy only).
    bank: the MemoryVLA-style perceptual-cognitive memory bank, :class:`PerceptualCognitiveMemory`
        (torch), batched over parallel episodes.
    envs: memory-dependent tasks with rendered frames (``cue_choice``, ``order``), vectorised with
        auto-reset and LeRobot observation keys, their scripted experts, demonstrations, scoring,
        and the Habitat-style ``Agent`` loop; navigation envs with habitat's observations, actions
        and metrics (``make_nav_env("miniworld", "findingdory")``: FindingDory-style tasks).
    agents: navigation agents with habitat's contract (:class:`MapMemoryAgent` and its baselines),
        ``evaluate_nav`` and the ``nav-eval`` command, a thin habitat-lab adapter.
    policies: robot policies on the bank with LeRobot's conventions (``policies/memvla``:
        :class:`MemoryVLAPolicy`), and :class:`MemoryAgent`, which acts in the envs.

Layer order inside the package: the 3D memory sits on tracking and the video memory, the bank on
the 3D memory; environments import no memory; policies and agents sit on the bank and act in the
environments (``tests/test_layering.py``). Importing this package loads nothing: every name below
is loaded from its subpackage on first use (torch, open3d, scipy only when needed).

Example:
    >>> import torch
    >>> from memstream.embodied import MemoryBankConfig, PerceptualCognitiveMemory, make_env
    >>> env = make_env("cue_choice", num_envs=2, seed=0)  # T-maze: remember the lamp's colour
    >>> env.reset()["observation.image"].shape  # (envs, H, W, RGB)
    (2, 64, 64, 3)
    >>> _ = torch.manual_seed(0)
    >>> bank = PerceptualCognitiveMemory(perceptual_dim=16, cognitive_dim=16, config=MemoryBankConfig(capacity=3))
    >>> bank.reset(batch_size=2)
    >>> for step in range(5):  # per step: 4 perceptual tokens and 1 cognitive token per episode
    ...     readout = bank.step(torch.randn(2, 4, 16), torch.randn(2, 1, 16))
    >>> readout.perceptual.shape, bank.bank_lengths.tolist()  # fused tokens; banks capped at capacity
    (torch.Size([2, 4, 16]), [3, 3])
"""

if __name__ != "memstream.embodied":  # imported by the bare name: it is another distribution's
    from memstream.kernels.bare_name import hand_over

    hand_over(__name__)
else:
    from memstream.streaming.lazy import lazy_attributes

    _LAZY = {  # name -> module that defines it, imported on first use
        # the 3D memory
        "DualMemory3D": "memstream.embodied.map3d.memory",
        "Map3DConfig": "memstream.embodied.map3d.memory",
        # the perceptual-cognitive bank
        "BankReadout": "memstream.embodied.bank",
        "MemoryBankConfig": "memstream.embodied.bank",
        "PerceptualCognitiveMemory": "memstream.embodied.bank",
        # the scene memory
        "SceneConfig": "memstream.embodied.scene",
        "SceneMemory": "memstream.embodied.scene",
        # tasks
        "TASKS": "memstream.embodied.envs",
        "Agent": "memstream.embodied.envs",
        "collect_demonstrations": "memstream.embodied.envs",
        "evaluate": "memstream.embodied.envs",
        "make_env": "memstream.embodied.envs",
        "run_agent": "memstream.embodied.envs",
        # navigation (habitat's contract): MiniWorld FindingDory-style tasks, the map-memory agent
        "FindingDoryConfig": "memstream.embodied.envs",
        "FindingDoryEnv": "memstream.embodied.envs",
        "make_nav_env": "memstream.embodied.envs",
        "MapMemoryAgent": "memstream.embodied.agents",
        "evaluate_nav": "memstream.embodied.agents",
        # policies and agents
        "MemoryAgent": "memstream.embodied.policies.memvla",
        "MemoryVLAConfig": "memstream.embodied.policies.memvla",
        "MemoryVLAPolicy": "memstream.embodied.policies.memvla",
    }

    __getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

    __all__ = sorted(_LAZY)
