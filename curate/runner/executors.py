"""Executors run the parallel work of a build: the shards of a row stage (`__call__`) and a global step's pure
per-part function (`map_parts`, e.g. dedup's signatures and band keys). `local` (in-process, the default, no
Ray import) or `ray` (`ray_exec.py`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

from curate.errors import RecipeError
from curate.runner.rows import NamedStep, run_local
from curate.steps import BuildContext

EXECUTORS = ("local", "ray")
R = TypeVar("R")

#: `fn(i)` for i in range(n), results in order (`fn` picklable and pure: it may run in another process).
PartMap = Callable[[Callable[[int], R], int], Iterator[R]]


def map_local(fn: Callable[[int], R], n: int) -> Iterator[R]:
    """In process, one part after the other (lazily: the caller holds one result at a time)."""
    return map(fn, range(n))


class Executor(Protocol):
    def __call__(self, steps: list[NamedStep], jobs: list[tuple[int, Path, Path]], ctx: BuildContext,
                 world: int) -> None: ...

    def map_parts(self, fn: Callable[[int], R], n: int) -> Iterator[R]: ...


class LocalExecutor:
    """The in-process executor: shards one after the other (`rows.run_local`), parts one after the other."""

    def __call__(self, steps: list[NamedStep], jobs: list[tuple[int, Path, Path]], ctx: BuildContext,
                 world: int) -> None:
        run_local(steps, jobs, ctx, world)

    def map_parts(self, fn: Callable[[int], R], n: int) -> Iterator[R]:
        return map_local(fn, n)


LOCAL = LocalExecutor()


def executor_for(options: dict[str, Any]) -> Executor:
    """The executor the build options name (`executor`, default "local")."""
    name = options.get("executor") or "local"
    if name == "local":
        return LOCAL
    if name == "ray":
        from curate.runner.ray_exec import RayExecutor  # Ray is imported only here

        return RayExecutor(address=options.get("ray_address"))
    raise RecipeError(f"unknown executor {name!r}", hint=f"use one of: {', '.join(EXECUTORS)}")
