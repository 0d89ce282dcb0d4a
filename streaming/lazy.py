"""Package faces that cost nothing to import: names load from their modules on first use.

Each package's ``__init__`` lists its public names in a literal ``_LAZY`` table (name -> the module
that defines it; ``tests/test_layering.py`` reads those tables and checks them like imports) and
takes its module ``__getattr__`` / ``__dir__`` from :func:`lazy_attributes`::

    _LAZY = {"Tracker": "memstream.tracking.tracker"}
    __getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
    __all__ = sorted(_LAZY)

so ``import memstream.tracking`` loads no numpy, torch or OpenCV, and ``from memstream.tracking
import Tracker`` loads what ``Tracker`` needs. Imports nothing of ours.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(module_name: str, table: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` that loads ``table``'s names on first use (then caches them in the
    module, so later lookups do not come back), and a ``__dir__`` that lists them.

    Args:
        module_name: the package's ``__name__``.
        table: public name -> the module that defines it.
    """
    namespace = vars(sys.modules[module_name])

    def __getattr__(name: str) -> Any:  # noqa: N807 (the module hook's own name)
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted({*namespace, *table})

    return __getattr__, __dir__
