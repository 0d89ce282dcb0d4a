"""Latency counters with bounded memory: exact count/mean/max, quantiles from a fixed reservoir."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np


@dataclass
class LatencyStats:
    """Streaming latency statistics of one stage (or of decoding).

    Quantiles come from a uniform reservoir sample of ``capacity`` values (Vitter's algorithm R), so
    memory stays constant on endless streams while count, total, mean and max stay exact.
    """

    capacity: int = 4096
    count: int = 0
    total_s: float = 0.0
    max_s: float = 0.0

    def __post_init__(self) -> None:
        self._sample: list[float] = []
        self._rng = random.Random(0)

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total_s += seconds
        self.max_s = max(self.max_s, seconds)
        if len(self._sample) < self.capacity:
            self._sample.append(seconds)
        else:
            slot = self._rng.randrange(self.count)
            if slot < self.capacity:
                self._sample[slot] = seconds

    @property
    def sample_size(self) -> int:
        return len(self._sample)

    def quantile_s(self, q: float) -> float:
        return float(np.quantile(self._sample, q)) if self._sample else 0.0

    def as_dict(self) -> dict[str, float | int]:
        """Milliseconds, rounded to microseconds: frames, mean, p50, p95, max, total."""
        mean = self.total_s / self.count if self.count else 0.0
        return {
            "frames": self.count,
            "mean_ms": round(mean * 1e3, 3),
            "p50_ms": round(self.quantile_s(0.5) * 1e3, 3),
            "p95_ms": round(self.quantile_s(0.95) * 1e3, 3),
            "max_ms": round(self.max_s * 1e3, 3),
            "total_s": round(self.total_s, 6),
            "throughput_fps": round(self.count / self.total_s, 2) if self.total_s > 0 else None,
        }
