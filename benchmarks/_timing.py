"""One home for how the benchmark scripts time things: N runs, the median with min and max.

Shared machines are noisy (a second job on 2 cores moves a single run by 30-50 %), so every figure a
script prints is the median of at least three runs, shown with its spread; ratios are of medians.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Timing:
    """Seconds of each run, and what the last run returned."""

    seconds: list[float] = field(default_factory=list)
    result: Any = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> str:
        return f"{min(self.seconds):.2f}-{max(self.seconds):.2f}"

    def rate(self, items: int) -> float:
        """Items per second at the median time."""
        return items / self.median

    def cell(self) -> str:
        """`median (min-max)` seconds, for a table cell."""
        return f"{self.median:.2f} ({self.spread})"


def measure(fn: Callable[[], Any], repeat: int = 3) -> Timing:
    """Run `fn` `repeat` times (at least 3 unless asked otherwise) and time each run."""
    out = Timing()
    for _ in range(repeat):
        t0 = time.perf_counter()
        out.result = fn()
        out.seconds.append(time.perf_counter() - t0)
    return out
