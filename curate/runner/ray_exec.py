"""`--executor ray`: the shards of a row stage as Ray Data `map_batches` over an actor pool.

- Connect to `--ray-address` / `$RAY_ADDRESS`, or start a local Ray (all CPUs of this machine).
- Each Ray batch is one spilled shard (an Arrow-backed parquet part on the shared work folder), so
  shards keep their completion markers and a resumed build skips them exactly as the local executor
  does; the output is the same bytes because shard outputs are concatenated in shard order.
- One actor per CPU holds the built steps (models load once per actor, not per shard). Teacher steps run
  inside these actors; they share the recipe's endpoint list and a `LoadTable` actor, so each request
  goes to the endpoint with the fewest requests in flight over the whole pool (`balance.py`).
- Teacher-call cache: the sqlite file in WAL mode under the work folder. SQLite serialises writers with
  a file lock, `busy_timeout` (60 s) makes a writer wait rather than fail, and every call is committed on
  its own, so many actor processes on one host write it safely and a killed actor loses only its calls in
  flight. SQLite locking is not reliable on network file systems, so on a multi-node cluster point
  `teacher_cache` (recipe step param or MEDCURATE_TEACHER_CACHE) at node-local storage or run teacher
  stages on one node; a single shared sqlite file across hosts is the one setup this does not support.
- Global steps (dedup, decontaminate, mix) run as their own stage, after the row stage before them has
  finished; the driver decides (clusters resolved there, on compact keys) and applies the decision. A step's
  pure per-part pass (dedup's shingles, MinHash signatures and band keys) runs as Ray tasks (`map_parts`:
  one task per part, each reading its own part file from the work folder; at most 2 per cluster CPU in
  flight, so the driver holds few results; results taken in part order). The decontamination index is
  built once on the driver and cached in the work folder.
- Polars keeps its default thread pool in every actor and task. Capping it at one thread per worker
  (`POLARS_MAX_THREADS=1`, as Ray does for OMP_NUM_THREADS) was measured and not kept: 1M scale rows on
  the 2-CPU local Ray, medians of 3, made normalize 14.4 -> 17.9 s, langid 52.5 -> 60.8 s and dedup
  53.1 -> 58.1 s (decontaminate 11.4 -> 8.9 s), 150.0 -> 164.3 s in all (the local build in that run was
  also ~10% slower, 182 -> 203 s). On a node with many CPUs, measure before capping it.
"""

from __future__ import annotations

import dataclasses
import os
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from curate.runner.balance import LoadTable, set_shared_load
from curate.runner.rows import NamedStep, run_shard, shard_context
from curate.steps import BuildContext

ENV_PREFIXES = ("MEDCURATE_", "HF_", "TRANSFORMERS_", "FASTTEXT", "LINGUA")
R = TypeVar("R")


def _init(address: str | None) -> Any:
    import ray

    if not ray.is_initialized():
        env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES) or k == "PYTHONPATH"}
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False,
                 log_to_driver=False, runtime_env={"env_vars": env})
        ray.data.DataContext.get_current().enable_progress_bars = False
    return ray


class _RayLoad:
    """The `SharedLoad` protocol over a LoadTable actor (awaiting its ObjectRefs keeps the loop free)."""

    def __init__(self, actor: Any):
        self.actor = actor

    async def acquire(self, n_endpoints: int) -> int:
        return await self.actor.acquire.remote(n_endpoints)

    def release(self, n_endpoints: int, index: int) -> None:
        self.actor.release.remote(n_endpoints, index)


class _ShardWorker:
    """A pool actor: runs the stage's steps over each shard it is handed (one shard per batch)."""

    def __init__(self, steps: list[NamedStep], ctx: BuildContext, world: int, load: Any):
        self.steps, self.ctx, self.world = steps, ctx, world
        set_shared_load(_RayLoad(load))

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        ranks = batch.column("rank").to_pylist()
        for rank, src, shard in zip(ranks, batch.column("src").to_pylist(), batch.column("shard").to_pylist(),
                                    strict=True):
            run_shard(self.steps, Path(src), Path(shard), shard_context(self.ctx, rank, self.world))
        return pa.table({"rank": ranks})


def _call(fn: Callable[[int], R], i: int) -> R:
    """A `map_parts` task (top level, so Ray pickles it by reference)."""
    return fn(i)


class RayExecutor:
    """Callable like `rows.run_local(steps, jobs, ctx, world)`; `map_parts` like `executors.map_local`."""

    def __init__(self, address: str | None = None):
        self.address = address

    def __call__(self, steps: list[NamedStep], jobs: list[tuple[int, Path, Path]], ctx: BuildContext,
                 world: int) -> None:
        if not jobs:
            return
        ray = _init(self.address)
        load = ray.remote(LoadTable).options(num_cpus=0).remote()
        # what crosses to the actors: no progress callback (it holds the driver's terminal), absolute paths
        wctx = dataclasses.replace(ctx, work_dir=Path(ctx.work_dir).resolve(),
                                   start_progress=BuildContext.__dataclass_fields__["start_progress"].default)
        items = [{"rank": i, "src": str(Path(src).resolve()), "shard": str(Path(shard).resolve())}
                 for i, src, shard in jobs]
        actors = max(1, min(len(jobs), int(ray.cluster_resources().get("CPU", 1))))
        ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _ShardWorker, fn_constructor_kwargs={"steps": steps, "ctx": wctx, "world": world, "load": load},
            batch_size=1, batch_format="pyarrow", concurrency=actors, num_cpus=1)
        done = sorted(r["rank"] for r in ds.take_all())
        if done != sorted(i for i, _, _ in jobs):
            raise RuntimeError(f"ray executor: shards {sorted(set(i for i, _, _ in jobs) - set(done))} did not run")
        ray.kill(load)

    def map_parts(self, fn: Callable[[int], R], n: int) -> Iterator[R]:
        """`fn(i)` for i in range(n) as Ray tasks (1 CPU each), at most 2 per cluster CPU in flight, results
        yielded in order (a task is submitted as the oldest result is taken; `fn` is shipped once)."""
        if n == 0:
            return
        ray = _init(self.address)
        task = ray.remote(num_cpus=1)(_call)
        shipped = ray.put(fn)
        window = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
        pending: deque[Any] = deque()
        for i in range(n):
            pending.append(task.remote(shipped, i))
            if len(pending) >= window:
                yield ray.get(pending.popleft())
        while pending:
            yield ray.get(pending.popleft())
