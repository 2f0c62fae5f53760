"""Throughput figures for progress bars and log lines: a windowed rate of cumulative counters.

The teacher bar used to divide the client's *cumulative* token count (every earlier attempt and step
on the same client included) by the seconds since the *current* `map_rows` call began, so a second
attempt pass started at 0.1 s with, say, 40,000 tokens already counted showed 400,000 tok/s and then
fell back to a few thousand. `RateMeter` counts from a baseline taken when it starts and reports the
rate over the last `window_s` seconds (10 s by default: long enough to smooth the bursty completion
of a batch of concurrent requests, short enough to show a server slowing down), and nothing
until `min_s` (1 s) has passed, when one or two completions would give a meaningless figure.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class RateMeter:
    """Per-second rate of a cumulative counter read by `value()`, over a sliding window."""

    def __init__(self, value: Callable[[], float], *, window_s: float = 10.0, min_s: float = 1.0,
                 clock: Callable[[], float] | None = None):
        self._value, self.window_s, self.min_s = value, window_s, min_s
        self._clock = clock or time.perf_counter
        self._t0 = self._clock()
        self._base = value()
        self._samples: deque[tuple[float, float]] = deque([(self._t0, self._base)])

    def rate(self, final: bool = False) -> float | None:
        """Units per second over the window, or None before `min_s` seconds have passed.

        `final=True` (the run is complete) gives the average over the whole run instead.
        """
        now, v = self._clock(), self._value()
        if final:
            return (v - self._base) / (now - self._t0) if now > self._t0 else None
        self._samples.append((now, v))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_s:
            self._samples.popleft()
        t_first, v_first = self._samples[0]
        if now - self._t0 < self.min_s or now <= t_first:
            return None
        return (v - v_first) / (now - t_first)

    def total(self) -> float:
        """Units counted since the meter started (the baseline excluded)."""
        return self._value() - self._base


def fmt_rate(rate: float | None, unit: str) -> str:
    """`1,234 tok/s`, or `– tok/s` while there is no meaningful figure yet."""
    return f"– {unit}/s" if rate is None else f"{rate:,.0f} {unit}/s"
