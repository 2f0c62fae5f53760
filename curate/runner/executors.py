"""Executors map the shards of a row stage: `local` (in-process, the default, no Ray import) or `ray`."""

from __future__ import annotations

from typing import Any

from curate.errors import RecipeError
from curate.runner.rows import run_local

EXECUTORS = ("local", "ray")


def executor_for(options: dict[str, Any]) -> Any:
    """The executor the build options name (`executor`, default "local")."""
    name = options.get("executor") or "local"
    if name == "local":
        return run_local
    if name == "ray":
        from curate.runner.ray_exec import RayExecutor  # Ray is imported only here

        return RayExecutor(address=options.get("ray_address"))
    raise RecipeError(f"unknown executor {name!r}", hint=f"use one of: {', '.join(EXECUTORS)}")
