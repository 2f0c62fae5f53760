"""Shared plumbing for teacher-backed steps: profile and cache resolution, the row worker pool, progress."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

import polars as pl
from pydantic import Field, field_validator

from curate.steps.base import BuildContext, StepParams, StepResult, no_rejects
from synth.cache import CACHE_FILE, CallCache
from synth.client import TeacherClient, run_sync
from synth.config import CLI_OVERRIDES, TeacherProfile, resolve_teacher
from synth.rate import RateMeter, fmt_rate

R = TypeVar("R")

CACHE_ENV = "MEDCURATE_TEACHER_CACHE"
#: rows per `prepare` call of `map_rows` (one cache `get_many`, so one SELECT, per chunk)
PREPARE_ROWS = 256
#: workers start in waves of this many rows, one wave per turn of the event loop, and the first chunks prepared are
#: this small: the first requests leave after a wave's rows are prepared, not after those of every worker
START_WAVE = 32


class FrameRows(Sequence[dict[str, Any]]):
    """A frame's rows as dicts (`DataFrame.to_dicts`), converted `START_WAVE` rows at a time when first read.

    `map_rows` reads rows in order, so the first requests leave once the first chunk is converted, and the rest is
    converted while replies come in: issue 17, `to_dicts` of the 2,000 MedQA rows of benchmarks/teacher_client.py
    (options as lists of structs) took 6-8 ms before the first request could leave, ~3% of the step; in slices of
    32 rows it costs the same in all (4.4 against 4.1 ms)."""

    def __init__(self, frame: pl.DataFrame):
        self._frame = frame
        self._chunks: dict[int, list[dict[str, Any]]] = {}

    def __len__(self) -> int:
        return self._frame.height

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} of {len(self)}")
        c, k = divmod(i % len(self), START_WAVE)
        chunk = self._chunks.get(c)
        if chunk is None:
            chunk = self._chunks[c] = self._frame.slice(c * START_WAVE, START_WAVE).to_dicts()
        return chunk[k]


class TeacherStepParams(StepParams):
    """Params every teacher step shares."""

    teacher: str | dict[str, Any] | None = Field(
        default=None, description="profile name or inline profile for this step; default: the recipe's `teacher`"
    )
    cache: str | None = Field(
        default=None, description=f"call-cache sqlite path; default ${CACHE_ENV} or <work_dir>/{CACHE_FILE}"
    )
    log_every_s: float = Field(default=10.0, gt=0, description="seconds between throughput log lines")

    @field_validator("teacher")
    @classmethod
    def _teacher_keys(cls, value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        """Catch typos in an inline profile when the recipe is validated, not when the step runs."""
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(TeacherProfile.model_fields) - {"profile"})
            if unknown:
                raise ValueError(f"unknown teacher profile keys {unknown}; known: {sorted(TeacherProfile.model_fields)}")
        return value


class OptionalTeacherParams(TeacherStepParams):
    """Params of a teacher step that a shipped recipe may carry without a teacher (rephrase pass, score)."""

    when: Literal["auto", "always"] = Field(
        "auto", description="auto: run only when a teacher is configured (else skipped loudly); always: run")


def teacher_configured(params: TeacherStepParams, ctx: BuildContext) -> str | None:
    """Where the teacher comes from, or None when nobody configured one."""
    if params.teacher is not None:
        return "the step's `teacher`"
    if ctx.options.get("teacher_url") or ctx.options.get("teacher_model"):
        return "--teacher-url/--teacher-model"
    if ctx.recipe is not None and getattr(ctx.recipe, "teacher", None) is not None:
        return "the recipe's `teacher`"
    return None


def teacher_source(params: OptionalTeacherParams, ctx: BuildContext) -> str | None:
    """Why the step runs (`when: always`, or where its teacher comes from); None: skip it."""
    return teacher_configured(params, ctx) if params.when == "auto" else "when: always"


def skipped(frame: pl.DataFrame, ctx: BuildContext, message: str, title: str) -> StepResult:
    """A teacher step that did not run: every row kept, a warning, `stats.skipped` and a report line."""
    ctx.logger.warning(message)
    stats = {"skipped": message, "rows_checked": 0,
             "report_tables": [{"title": title, "header": ["status"], "rows": [[message]]}]}
    return StepResult(kept=frame, rejected=no_rejects(frame), stats=stats)


def profile_for(params: TeacherStepParams, ctx: BuildContext) -> TeacherProfile:
    """Step `teacher` > recipe `teacher` > default profile; CLI --teacher-url/--teacher-model override all."""
    ref = params.teacher
    if ref is None and ctx.recipe is not None:
        ref = getattr(ctx.recipe, "teacher", None)
    overrides = {k: ctx.options.get(k) for k in CLI_OVERRIDES}
    return resolve_teacher(ref, overrides)


def cache_path(params: TeacherStepParams, ctx: BuildContext) -> Path:
    explicit = params.cache or ctx.options.get("teacher_cache") or os.environ.get(CACHE_ENV)
    return Path(explicit) if explicit else Path(ctx.work_dir) / CACHE_FILE


def derive_seed(base: int, row_id: str, attempt: int) -> int:
    """A per-row, per-attempt seed: stable across runs (so cached calls match), different per attempt."""
    digest = hashlib.sha256(f"{base}:{row_id}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


async def map_rows(
    rows: Sequence[dict[str, Any]],
    work: Callable[[TeacherClient, dict[str, Any]], Awaitable[R]],
    client: TeacherClient,
    ctx: BuildContext,
    description: str,
    log_every_s: float = 10.0,
    prepare: Callable[[TeacherClient, list[dict[str, Any]]], None] | None = None,
) -> list[R]:
    """Run `work(client, row)` over all rows, `max_concurrency` rows at a time; results in input order.

    `prepare(client, chunk)` runs on consecutive `PREPARE_ROWS`-row chunks, each just before its first row is
    taken: the first requests leave once the chunks of the first `max_concurrency` rows are prepared, and the
    rest are prepared while replies come in (issue 17: preparing all 2,000 MedQA CoT rows up front kept the
    server idle for about 40 ms of a ~450 ms run). The workers start in waves of `START_WAVE`, one per turn of the
    loop, after the client's server probe (`TeacherClient.probed`), and the first chunks are that small: the first
    requests left 2 ms after the start of `map_rows` instead of 11-13 ms (when every worker started at once, all
    512 prepared their rows in the loop's first turn, and the probe's round trips waited for that)."""
    total = len(rows)  # once: a `FrameRows` answers `len` in Python
    results: list[Any] = [None] * total
    prepared = 0
    advance = ctx.start_progress(description, total)
    done = 0
    t0 = time.perf_counter()
    next_log = t0 + log_every_s
    it = iter(range(total))
    # rates count from this call's start over a sliding window (synth/rate.py: the stats are cumulative)
    tokens = RateMeter(lambda: client.stats.prompt_tokens + client.stats.completion_tokens)
    requests = RateMeter(lambda: client.stats.requests)

    def log_line(final: bool = False) -> None:
        s = client.stats
        secs = max(time.perf_counter() - t0, 1e-9)
        rate = done / secs
        eta = (total - done) / rate if rate > 0 else float("inf")
        ctx.logger.info(
            "%s: %d/%d rows, %s, %s, %d cache hits, %d retries, %d failed%s",
            description, done, total, fmt_rate(requests.rate(final), "req"), fmt_rate(tokens.rate(final), "tok"),
            s.cache_hits, s.retries, s.failures, "" if final else f", ETA {eta:.0f}s",
        )

    rich_fields = _takes_fields(advance)
    next_info = t0

    def info(final: bool = False) -> str:
        s = client.stats
        return (f"{fmt_rate(requests.rate(final), 'req')} · {fmt_rate(tokens.rate(final), 'tok')} · "
                f"{s.cache_hits:,} cached · {s.retries:,} retries")

    async def worker() -> None:
        nonlocal done, next_log, next_info, prepared
        for i in it:
            if prepare is not None and i >= prepared:  # rows are taken in order, so `i == prepared`
                size = min(PREPARE_ROWS, max(START_WAVE, prepared))  # small chunks first: see START_WAVE
                prepare(client, rows[prepared : prepared + size])
                prepared += size
            results[i] = await work(client, rows[i])
            done += 1
            now = time.perf_counter()
            if rich_fields and (now >= next_info or done == total):
                next_info = now + 0.5
                advance(1, info=info(final=done == total))  # type: ignore[call-arg]
            else:
                advance(1)
            if now >= next_log:
                next_log = now + log_every_s
                log_line()

    n = min(client.profile.max_concurrency, max(1, total))
    tasks: list[asyncio.Task[None]] = []
    try:
        for start in range(0, n, START_WAVE):
            tasks.extend(asyncio.ensure_future(worker()) for _ in range(min(START_WAVE, n - start)))
            await asyncio.sleep(0)  # this wave's requests leave before the next wave prepares its rows
            if start == 0:
                await client.probed()  # the probe's round trips are not held up by the next waves' work
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
    if rows:
        log_line(final=True)
    return results


def _takes_fields(advance: Callable[..., None]) -> bool:
    """Whether the runner's progress callback accepts rich task fields: `advance(n, info="...")`."""
    try:
        params = inspect.signature(advance).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is p.VAR_KEYWORD or p.name == "info" for p in params)


async def with_client(
    profile: TeacherProfile, cache_file: Path, body: Callable[[TeacherClient], Awaitable[R]], seed: int = 0,
    expected_calls: int = 0,
) -> R:
    cache = CallCache(cache_file)
    try:
        async with TeacherClient(profile, cache, seed=seed, expected_calls=expected_calls) as client:
            return await body(client)
    finally:
        cache.close()


def run_rows(
    rows: Sequence[dict[str, Any]],
    row_fn: Callable[[TeacherClient, dict[str, Any]], Awaitable[R]],
    profile: TeacherProfile,
    cache_file: Path,
    ctx: BuildContext,
    label: str,
    log_every_s: float,
    seed: int = 0,
    prepare: Callable[[TeacherClient, list[dict[str, Any]]], None] | None = None,
) -> tuple[list[R], dict[str, Any]]:
    """From sync code: `row_fn(client, row)` for every row through one cached client with bounded concurrency.

    `prepare(client, chunk)` runs on consecutive chunks of rows before their first row (e.g. `client.prefetch`
    of those rows' first calls; see `map_rows`).
    Returns the outcomes in row order and the client's stats (requests, retries, tokens, cache hits).
    """
    if not rows:
        return [], {}

    async def body(client: TeacherClient) -> tuple[list[R], dict[str, Any]]:
        outs = await map_rows(rows, row_fn, client, ctx, label, log_every_s, prepare)
        return outs, client.stats.as_dict()

    return run_sync(lambda: with_client(profile, cache_file, body, seed, expected_calls=len(rows)))

