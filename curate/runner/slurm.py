"""A Slurm batch script that starts a Ray cluster across the allocated nodes and runs one build on it.

The head starts on the first node of the allocation, every other node joins it (`ray start --block`
under `srun`, one task per node), then `curate build ... --executor ray --ray-address head:port` runs
on the batch host; when the build ends the job's background `srun`s are stopped. Rendered, not run here.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import jinja2
from pydantic import BaseModel, ConfigDict, Field

TEMPLATE = Path(__file__).with_name("templates") / "ray_build.sbatch.j2"


class SlurmJob(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recipe: str
    nodes: int = Field(default=2, ge=1)
    cpus_per_task: int = Field(default=32, ge=1)
    mem: str = "0"  # all of each node's memory
    time: str = "04:00:00"
    partition: str | None = None
    account: str | None = None
    venv: str | None = None
    builds: str = "$PWD/builds"  # shared storage
    port: int = 6379
    log: str = "medcurate-%j.log"
    head_wait_s: int = 15
    worker_wait_s: int = 15
    build_args: list[str] = Field(default_factory=list)  # extra `curate build` arguments (--source, --limit, ...)


def render_slurm(job: SlurmJob) -> str:
    """The sbatch script for `job` (every user value shell-quoted into the build command)."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False,
                             comment_start_string="{##", comment_end_string="##}")  # bash uses ${#array[@]}
    template = env.from_string(TEMPLATE.read_text(encoding="utf-8"))
    args = " ".join(shlex.quote(a) for a in [job.recipe, *job.build_args])
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(job.recipe).stem)
    return template.render(**{**job.model_dump(), "recipe_slug": slug, "build_args": args})
