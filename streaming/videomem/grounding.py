"""Facts from other memories, prefixed to a Video-LLM's question (``memstream ask --scene RUN_DIR``).

A grounding provider is a function ``(source, question, at_s) -> list[str]`` registered in the
``memstream.grounding`` entry-point group (the scene memory registers ``scene``), so the video
memory asks for facts by name and never imports the packages that know them. The facts go before
the question in plain lines, and the answer record lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

from memstream.streaming.errors import ConfigError

GROUP = "memstream.grounding"

Provider = Callable[[str, str, "float | None"], list[str]]


def grounding_provider(name: str, group: str = GROUP):
    """The provider registered as ``name`` in ``group`` (``memstream.grounding``, or
    ``memstream.tools`` for the service's tool sets).

    Raises:
        ConfigError: none is, or its package cannot be imported.
    """
    found = {ep.name: ep for ep in entry_points(group=group)}
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise ConfigError(f"no grounding provider {name!r} (installed: {known})",
                          "Reinstall memstream (pip install -e .) so its entry points are registered")
    try:
        return found[name].load()
    except ImportError as exc:
        raise ConfigError(f"the grounding provider {name!r} cannot be imported ({exc})",
                          'Install the package that provides it (pip install "memstream[all]")') from exc


def grounded_question(question: str, facts: list[str]) -> str:
    """``question`` after the facts, one per line (the question alone when there are none)."""
    if not facts:
        return question
    lines = "\n".join(f"- {fact}" for fact in facts)
    return f"Facts from the scene memory (tracked objects; positions and stream times):\n{lines}\nQuestion: {question}"
