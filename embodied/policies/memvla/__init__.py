"""A MemoryVLA-style memory-conditioned policy with LeRobot's interface.

``configuration_memvla.MemoryVLAConfig``, ``modeling_memvla.MemoryVLAPolicy`` (LeRobot's
``configuration_<name>.py`` / ``modeling_<name>.py`` naming, so its factory finds them), the
encoders that feed the bank, the flow-matching action head, and imitation training.
"""

from memstream.embodied.policies.memvla.agent import MemoryAgent
from memstream.embodied.policies.memvla.configuration_memvla import MemoryVLAConfig
from memstream.embodied.policies.memvla.modeling_memvla import MemoryVLAPolicy, PolicyInputError
from memstream.embodied.policies.memvla.training import as_policy_fn, config_for, dataset_stats, episode_batch, train

__all__ = ["MemoryAgent", "MemoryVLAConfig", "MemoryVLAPolicy", "PolicyInputError", "as_policy_fn", "config_for", "dataset_stats",
           "episode_batch", "train"]
