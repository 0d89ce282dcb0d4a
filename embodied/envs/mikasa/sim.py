"""Loading ManiSkill3 and MIKASA-Robo lazily, and building one suite env with a clear error when it cannot.

Rendering on a machine without a GPU goes through Vulkan's CPU driver, Mesa's lavapipe. Debian 12's
Mesa 22.3.6 lacks ``VK_KHR_external_semaphore_fd`` and SAPIEN then finds no rendering device; Mesa 25
(Debian ``bookworm-backports``) works. ``tests/system_deps.sh`` installs it; :data:`VULKAN_FIX` says how.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from memstream.embodied.envs.gl import load_triton_first
from memstream.streaming.errors import MemstreamError

INSTALL_FIX = ("pip install 'memstream[mikasa]' -c constraints.txt, then "
               "pip install --no-deps mikasa-robo-suite==1.0.0 (its own pins, torch 2.2.1 and "
               "mani_skill 3.0.0b15, must not be followed)")
VULKAN_FIX = ("SAPIEN needs a Vulkan device: on Debian 12 run `bash tests/system_deps.sh` (installs Mesa 25's "
              "lavapipe from bookworm-backports: apt-get install -t bookworm-backports mesa-vulkan-drivers "
              "libdrm2 libdrm-amdgpu1), or set VK_ICD_FILENAMES to a working ICD json such as "
              "/usr/share/vulkan/icd.d/lvp_icd.json")
_VULKAN_SIGNS = ("vk::", "vulkan", "rendering device", "ErrorIncompatibleDriver", "ErrorInitializationFailed")


@functools.cache
def load_suite() -> Any:
    """Import gymnasium, ManiSkill3 and MIKASA-Robo's VLA tasks; return ``gymnasium``.

    Raises:
        MemstreamError: a package is missing (names the install line).
    """
    load_triton_first()  # before lavapipe's LLVM (memstream.embodied.envs.gl)
    try:
        import gymnasium
        import mani_skill.envs  # noqa: F401 - registers ManiSkill's own envs
        import mikasa_robo_suite.vla.memory_envs  # noqa: F401 - registers the *-VLA-v0 ids
    except ModuleNotFoundError as error:
        raise MemstreamError(f"MIKASA-Robo needs {error.name!r}, which is not installed", INSTALL_FIX) from None
    return gymnasium


def make_suite_env(suite_id: str, *, obs_mode: str, control_mode: str, image_size: int) -> Any:
    """``gymnasium.make`` one CPU-simulated suite env (ManiSkill's CPU backend runs one env per process).

    Raises:
        MemstreamError: missing packages, or no Vulkan device for the renderer (names the fix).
    """
    gym = load_suite()
    # the cameras exist in every obs_mode (MikasaEnv renders them itself in "state" mode): size them always
    kwargs: dict[str, Any] = dict(num_envs=1, obs_mode=obs_mode, sim_backend="cpu", control_mode=control_mode,
                                  reward_mode="normalized_dense", sensor_configs=dict(width=image_size, height=image_size))
    os.environ.setdefault("MESA_SHADER_CACHE_DISABLE", "true")
    try:
        return gym.make(suite_id, **kwargs)
    except RuntimeError as error:
        if any(sign.lower() in str(error).lower() for sign in _VULKAN_SIGNS):
            raise MemstreamError(f"MIKASA-Robo cannot render {suite_id}: no usable Vulkan device ({error})",
                                 VULKAN_FIX) from error
        raise MemstreamError(f"ManiSkill could not build {suite_id}: {error}",
                             "Check the installed mani-skill (3.0.1) and mikasa-robo-suite (1.0.0)") from error
