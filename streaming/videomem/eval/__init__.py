"""Fidelity measures of the video memory that hold without pretrained weights.

How much of a question's attention the retrieved blocks hold (``attention_mass``,
``attention_recall``), how far the first-token distribution moves (``first_token_distribution``),
planted needles (``needle_embeds``) and one report per retrieval policy (``evaluate_policy`` ->
``FidelityReport``). Loaded on first use (torch).

Example::

    from memstream.streaming.videomem.eval import attention_mass, evaluate_policy
    report = evaluate_policy(memory, "What is red?", policy, attention_mass(memory, "What is red?"))
"""

from __future__ import annotations

from memstream.streaming.lazy import lazy_attributes

_LAZY = {  # name -> module that defines it
    "FidelityReport": "memstream.streaming.videomem.eval.fidelity",
    "attention_mass": "memstream.streaming.videomem.eval.fidelity",
    "attention_recall": "memstream.streaming.videomem.eval.fidelity",
    "evaluate_policy": "memstream.streaming.videomem.eval.fidelity",
    "first_token_distribution": "memstream.streaming.videomem.eval.fidelity",
    "needle_embeds": "memstream.streaming.videomem.eval.fidelity",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
