"""``memstream info``: versions, devices, and which optional extras are importable.

Looks packages up with ``importlib`` metadata and specs, importing only torch (for devices), so it
stays fast and works when an extra is broken.
"""

from __future__ import annotations

import importlib.util
import platform
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

# (import name, distribution name, extra that installs it)
OPTIONAL = [
    ("decord", "decord", "core"),
    ("av", "av", "core"),
    ("cv2", "opencv-contrib-python-headless", "core"),
    ("torchvision", "torchvision", "vqa"),
    ("transformers", "transformers", "vqa"),
    ("sam2", "sam2", "tracking"),
    ("open3d", "open3d-cpu", "3d"),
    ("vizdoom", "vizdoom", "sim"),
    ("miniworld", "miniworld", "sim"),  # the FindingDory-style navigation tasks
    ("fastapi", "fastapi", "serve"),
    ("uvicorn", "uvicorn", "serve"),
    ("triton", "triton", "with torch on Linux"),
]


INSTALL_HINTS = {
    "vqa": "missing: pip install -e '.[vqa]'",
    "3d": "missing: pip install -e '.[3d]'",
    "sim": "missing: pip install -e '.[sim]'",
    "serve": "missing: pip install -e '.[serve]'",
    "tracking": "missing: SAM2_BUILD_CUDA=0 pip install --no-build-isolation --no-deps sam2==1.1.0",
}


@dataclass(frozen=True)
class PackageStatus:
    module: str
    distribution: str
    extra: str
    version: str | None  # None when not importable


def _version(distribution: str, module: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return None
    for name in (distribution, module):
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return "installed"


def collect_info() -> dict:
    import torch

    devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {
        "memstream": _version("memstream", "memstream.streaming"),  # the bare name is not ours
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "devices": devices or ["cpu"],
        "packages": [PackageStatus(m, d, e, _version(d, m)) for m, d, e in OPTIONAL],
    }


def print_info(info: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    console.print(f"memstream {info['memstream']}  python {info['python']}  {info['platform']}")
    console.print(f"torch {info['torch']} (built with CUDA {info['cuda']}); devices: {', '.join(info['devices'])}")
    table = Table("package", "version", "extra")
    for status in info["packages"]:
        table.add_row(status.module, status.version or escape(INSTALL_HINTS.get(status.extra, "missing")), status.extra)
    console.print(table)
