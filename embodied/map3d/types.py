"""Names the 3D memory's options choose from, light enough for the ``reconstruct`` command's
argument parsing (no numpy, no open3d).

* :data:`MaskSource`: where dynamic pixels come from: the tracking stage's masks, the source's
  ground truth (synthetic scenes), or the geometric check against the static map.
* :data:`PoseMode`: camera poses ``given`` with the frames, ``estimated`` by registration to the
  static map, or ``auto`` (estimated only for frames without one).
"""

from __future__ import annotations

from typing import Literal

MaskSource = Literal["tracking", "ground_truth", "geometry"]
PoseMode = Literal["given", "estimated", "auto"]

__all__ = ["MaskSource", "PoseMode"]
