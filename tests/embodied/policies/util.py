"""Shared settings of the policy tests."""

from memstream.embodied.bank import MemoryBankConfig

# a tiny flow policy that replans every step with the deterministic sampler (ensembling, open loop)
TINY_DETERMINISTIC = dict(perceptual_dim=16, perceptual_grid=2, cognitive_dim=16, hidden_dim=32, head_layers=1,
                          head_heads=2, num_inference_steps=2, vocab_buckets=64, chunk_size=4, n_action_steps=1,
                          inference_noise=0.0, bank=MemoryBankConfig(capacity=4))
