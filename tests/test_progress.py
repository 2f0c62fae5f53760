"""Progress figures: the teacher bar's tokens/s, per-step bars and plain progress lines when piped."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from curate.steps import BuildContext
from synth.client import ClientStats
from synth.rate import RateMeter, fmt_rate
from synth.runner import map_rows


def test_rate_meter_counts_from_its_start_over_a_window() -> None:
    now = [100.0]
    total = [40_000]  # tokens counted by earlier steps on the same client
    meter = RateMeter(lambda: total[0], clock=lambda: now[0], window_s=10.0)
    now[0] += 0.1
    total[0] += 100
    assert meter.rate() is None  # too early for a meaningful figure
    for _ in range(30):  # 1,000 tokens per second, steadily
        now[0] += 1.0
        total[0] += 1_000
        rate = meter.rate()
        assert rate is not None and 900 <= rate <= 1_100
    for _ in range(20):  # the server slows to 100 tok/s: the window shows it within 10 s
        now[0] += 1.0
        total[0] += 100
        rate = meter.rate()
    assert rate == pytest.approx(100)
    assert meter.total() == 100 + 30_000 + 2_000
    assert fmt_rate(None, "tok") == "– tok/s" and fmt_rate(1234.4, "tok") == "1,234 tok/s"


def test_teacher_bar_tokens_per_second_ignores_earlier_calls(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    """A second map_rows pass on a client that already counted 1M tokens showed ~2M tok/s; now ~1,000."""
    clock = [1000.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    client = SimpleNamespace(stats=ClientStats(prompt_tokens=600_000, completion_tokens=400_000),
                             profile=SimpleNamespace(max_concurrency=1), probed=lambda: asyncio.sleep(0))

    async def work(c, row):
        clock[0] += 0.5  # each row takes 0.5 s and costs 500 tokens
        c.stats.completion_tokens += 500
        c.stats.requests += 1
        return row["i"]

    infos: list[str] = []

    def start(description: str, total: int):
        def advance(n: int = 1, **fields):
            if "info" in fields:
                infos.append(fields["info"])
        return advance

    ctx = BuildContext(recipe_name="t", work_dir=tmp_path, start_progress=start,
                       logger=logging.getLogger("test"))
    out = asyncio.run(map_rows([{"i": i} for i in range(40)], work, client, ctx, "cot"))
    assert out == list(range(40))
    figures = [float(i.split(" tok/s")[0].split("· ")[-1].replace(",", "")) for i in infos
               if "– tok/s" not in i]
    assert figures, infos
    assert max(figures) <= 1_100 and min(figures) >= 900, infos
