"""Flash Memory settings, with Flash-VStream-Qwen's defaults.

The anchor (``IVGSZ/Flash-VStream`` @ ``8f6bde2``, ``Flash-VStream-Qwen/models/flash_memory_constants.py``)
configures the memory in Qwen2-VL *frames*: ``flash_memory_temporal_length=120`` and
``flash_memory_spatial_length=60``. ``FlashMemory.__init__`` (``vstream_qwen2vl_model.py``) asserts both
are even and halves them, because one Qwen2-VL temporal grid is 2 frames: the memory holds
``120 // 2 = 60`` CSM centroids and ``60 // 2 = 30`` DAM frames, counted in grids. This config counts
in the unit :class:`FlashMemory` is updated with (one ``update`` = one grid, see ``memory.py``), so
the defaults are 60 and 30; :meth:`FlashMemoryConfig.from_anchor` takes the anchor's frame counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field

from memstream.streaming.configtypes import strict_config

KMEANS_INITS = ("farthest_point", "random")
DISTANCES = ("l2", "cos")


@strict_config
@dataclass(frozen=True)
class FlashMemoryConfig:
    """How the Flash Memory clusters, keeps and retrieves frames.

    Attributes:
        csm_clusters: K, Context Synopsis Memory centroids (anchor: ``temporal_length // 2 = 60``).
        dam_frames: Detail Augmentation Memory frames, taken for the heaviest clusters
            (anchor: ``spatial_length // 2 = 30``). 0 disables the DAM. At most ``csm_clusters``
            (the anchor would fail on a reshape otherwise).
        kmeans_iterations: Lloyd iterations per re-clustering (anchor: ``max_iter=10``).
        kmeans_tolerance: stop early when the summed L2 shift of the centroids is below this
            (anchor: ``tol=1e-4``).
        kmeans_init: ``"farthest_point"`` (default, deterministic: heaviest point first, then the
            point farthest from the chosen ones) or ``"random"`` (the anchor's rule: K distinct
            rows drawn uniformly, here from a generator seeded by ``seed`` and the frame count).
        seed: seed of the ``"random"`` initialisation.
        distance: metric of the DAM search (frame nearest to a centroid) and of the bounded mode's
            candidate ranking: ``"l2"`` (anchor's ``klarge_retrieve``) or ``"cos"`` (its
            ``klarge_retrieve_cos``, with the anchor's arg-min-of-similarity defect fixed). The
            k-means itself is always L2, as in the anchor.
        keep_all_frames: True keeps every frame's low-resolution features, so the DAM search is
            exactly the anchor's (memory grows with the stream); False (default) keeps
            ``candidates_per_cluster`` frames per cluster (memory bounded by K * m frames).
        candidates_per_cluster: m, the nearest member frames kept per cluster in bounded mode.
    """

    csm_clusters: Annotated[int, Field(ge=1)] = 60
    dam_frames: Annotated[int, Field(ge=0)] = 30
    kmeans_iterations: Annotated[int, Field(ge=1)] = 10
    kmeans_tolerance: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 1e-4
    kmeans_init: Literal[KMEANS_INITS] = "farthest_point"
    seed: Annotated[int, Field(ge=0)] = 0
    distance: Literal[DISTANCES] = "l2"
    keep_all_frames: bool = False
    candidates_per_cluster: Annotated[int, Field(ge=1)] = 4

    def __post_init__(self) -> None:
        # Checks of a config built in Python (parse() applies the field constraints above first and
        # names the YAML key), and the check across fields (dam_frames <= csm_clusters).
        for name in ("csm_clusters", "dam_frames", "kmeans_iterations", "seed", "candidates_per_cluster"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be an int, got {value!r}")
        for name in ("csm_clusters", "kmeans_iterations", "candidates_per_cluster"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.dam_frames <= self.csm_clusters:
            raise ValueError(
                f"dam_frames must be in [0, csm_clusters={self.csm_clusters}], got {self.dam_frames}"
            )
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        tol = self.kmeans_tolerance
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol < 0:
            raise ValueError(f"kmeans_tolerance must be a finite number >= 0, got {tol!r}")
        if self.kmeans_init not in KMEANS_INITS:
            raise ValueError(f"kmeans_init must be one of {KMEANS_INITS}, got {self.kmeans_init!r}")
        if self.distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {self.distance!r}")
        if not isinstance(self.keep_all_frames, bool):
            raise ValueError(f"keep_all_frames must be a bool, got {self.keep_all_frames!r}")

    @classmethod
    def from_anchor(
        cls, temporal_length: int = 120, spatial_length: int = 60, **overrides: Any
    ) -> FlashMemoryConfig:
        """Build from the anchor's ``flash_memory_temporal_length`` / ``spatial_length`` (frames).

        Args:
            temporal_length: CSM length in frames; must be even (anchor asserts it). K = half.
            spatial_length: DAM length in frames; must be even. DAM grids = half.
            **overrides: any other field of this config.

        Returns:
            The config with ``csm_clusters = temporal_length // 2`` and
            ``dam_frames = spatial_length // 2``.

        Example:
            >>> FlashMemoryConfig.from_anchor(120, 60).csm_clusters
            60
        """
        for name, value in (("temporal_length", temporal_length), ("spatial_length", spatial_length)):
            if not isinstance(value, int) or value % 2:
                raise ValueError(f"{name} must be an even int (Qwen2-VL grids are 2 frames), got {value!r}")
        return cls(csm_clusters=temporal_length // 2, dam_frames=spatial_length // 2, **overrides)
