"""MemoryVLA-style perceptual-cognitive memory bank, batched over parallel episodes.

Public API: ``PerceptualCognitiveMemory`` (the ``nn.Module``), ``MemoryBankConfig``, ``BankReadout``
and ``BankInputError``; the building blocks (``layers``, ``storage``) and the plain reference bank
(``reference``) are importable from their modules.
"""

from .config import MemoryBankConfig
from .memory import PerceptualCognitiveMemory
from .types import BankInputError, BankReadout

__all__ = ["BankInputError", "BankReadout", "MemoryBankConfig", "PerceptualCognitiveMemory"]
