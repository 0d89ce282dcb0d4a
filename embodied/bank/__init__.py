"""MemoryVLA-style perceptual-cognitive memory bank, batched over parallel episodes.

Public API: ``PerceptualCognitiveMemory`` (the ``nn.Module``), ``MemoryBankConfig``, ``BankReadout``
and ``BankInputError``; the building blocks (``layers``, ``storage``) and the plain reference bank
(``reference``) are importable from their modules.

Example:
    >>> import torch
    >>> from memstream.embodied.bank import MemoryBankConfig, PerceptualCognitiveMemory
    >>> _ = torch.manual_seed(0)
    >>> bank = PerceptualCognitiveMemory(perceptual_dim=16, cognitive_dim=16, config=MemoryBankConfig(capacity=3))
    >>> bank.reset(batch_size=2)  # two parallel episodes
    >>> for step in range(5):  # (B, N, Cp) perceptual and (B, 1, Dc) cognitive tokens per step
    ...     readout = bank.step(torch.randn(2, 4, 16), torch.randn(2, 1, 16))
    >>> readout.perceptual.shape, readout.bank_lengths.tolist()  # 5 steps consolidated into 3 entries
    (torch.Size([2, 4, 16]), [3, 3])
"""

from .config import MemoryBankConfig
from .memory import PerceptualCognitiveMemory
from .types import BankInputError, BankReadout

__all__ = ["BankInputError", "BankReadout", "MemoryBankConfig", "PerceptualCognitiveMemory"]
