"""Load order of the two LLVMs a process may hold: triton's and Mesa's.

Triton's compiler library carries its own LLVM; Mesa's software renderers (llvmpipe for EGL/OpenGL:
MiniWorld, Memory Maze's MuJoCo; lavapipe for Vulkan: ManiSkill's SAPIEN) load the system's. Once
Mesa's is in the process, loading triton's segfaults in the dynamic loader (seen with triton 3.8 and
Debian 12's Mesa: MiniWorld rendered a frame, then ``import triton``, as ``torch.optim.AdamW`` and
``torch.compile`` do through ``torch._dynamo``, crashed the process). The other order works, so every
simulator loader here calls :func:`load_triton_first` before it can open a GL or Vulkan context.
"""

from __future__ import annotations

import functools
import importlib.util


@functools.cache
def load_triton_first() -> bool:
    """Import triton now, before Mesa's LLVM is loaded; False where triton is not installed (then
    there is nothing to clash with)."""
    if importlib.util.find_spec("triton") is None:
        return False
    import triton  # noqa: F401 - loaded for its LLVM, see the module docstring

    return True
