"""What happens when one of memstream's folders is imported by its bare name.

memstream's code lives in the checkout's top-level folders (``kernels/``, ``streaming/``,
``tracking/``, ``embodied/``) and imports as ``memstream.<folder>``. Those bare names belong to other
distributions: Hugging Face's ``kernels`` (a dependency of transformers), MosaicML's ``streaming``.
Whenever the checkout's root is on ``sys.path`` (``python`` or a notebook started there, pytest's
rootdir insertion) a bare ``import kernels`` finds our folder first. Each folder's ``__init__`` then
calls :func:`hand_over`, which loads the distribution that owns the name in its place, so
``import kernels`` means Hugging Face's package wherever it runs; where nothing else owns the name,
the import fails with a message that names ``memstream.<folder>``.

This module imports nothing but the standard library.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]


def hand_over(name: str) -> None:
    """Put the module that owns the bare ``name`` into ``sys.modules`` in place of our folder.

    Called from the ``__init__`` of a folder imported as ``name`` rather than ``memstream.<name>``;
    the import system returns whatever ``sys.modules[name]`` holds once that ``__init__`` finishes.

    Raises:
        ModuleNotFoundError: no other installed distribution provides ``name``.
    """
    search = [entry for entry in sys.path if _resolve(entry) != CHECKOUT]
    spec = importlib.machinery.PathFinder.find_spec(name, search)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(
            f"No module named {name!r}: {CHECKOUT / name} is memstream's, import it as memstream.{name}",
            name=name,
        )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise


def _resolve(entry: str) -> Path | None:
    try:
        return Path(entry or ".").resolve()
    except (OSError, RuntimeError):  # an unreadable or looping sys.path entry is not the checkout
        return None
