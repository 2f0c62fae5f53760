"""The run folder of one build: spilled parquet parts and completion markers, so a killed build resumes.

The folder is `<work_dir>/runs/<key>`; `key` hashes everything that decides the rows (recipe bytes, each
source file's path, size and mtime, limit, options such as the teacher and batch size, benchmarks root,
medcurate version). A changed input gives a new key, hence a fresh run; the same inputs resume. A marker
(`.done`, JSON) is written last and atomically, after the files it vouches for, so a present marker means
its files are complete. A `LOCK` file holding the owner's pid stops two live builds sharing a run folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from curate import __version__
from curate.errors import MedcurateError
from curate.fsutil import pid_alive

MARKER = ".done"
RESUME_ANYWHERE = {"executor", "ray_address"}  # options that never change rows: a build may resume under another


def _stat(path: Path) -> list[Any]:
    """(path, size, mtime) of a source path; for a folder or glob, of every file under it."""
    files = sorted(path.parent.glob(path.name)) if any(c in path.name for c in "*?[") else [path]
    out: list[Any] = []
    for f in files:
        for g in sorted(f.rglob("*")) if f.is_dir() else [f]:
            with contextlib.suppress(OSError):
                st = g.stat()
                out.append([str(g.resolve()), st.st_size, st.st_mtime_ns])
    return out


def run_key(recipe: Any, recipe_path: Path, recipe_sha: str, overrides: dict[str, str], limit: int | None,
            options: dict[str, Any]) -> str:
    """Hex digest naming the run folder (see the module docstring for what goes in)."""
    srcs = []
    for spec in recipe.sources:
        where = overrides.get(spec.name) or (str(recipe_path.parent / spec.path) if spec.path else None)
        srcs.append([spec.name, _stat(Path(where)) if where else spec.hub])
    opts = {k: v for k, v in options.items() if k not in RESUME_ANYWHERE}
    payload = [recipe_sha, srcs, limit, opts, os.environ.get("MEDCURATE_BENCHMARKS"), __version__]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class RunDir:
    path: Path

    def __post_init__(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def sub(self, *names: str) -> Path:
        p = self.path.joinpath(*names)
        p.mkdir(parents=True, exist_ok=True)
        return p

    @staticmethod
    def done(folder: Path) -> dict[str, Any] | None:
        """The marker's JSON if `folder` is complete, else None."""
        marker = folder / MARKER
        return json.loads(marker.read_text()) if marker.is_file() else None

    @staticmethod
    def mark(folder: Path, meta: dict[str, Any]) -> None:
        tmp = folder / f"{MARKER}.tmp"
        tmp.write_text(json.dumps(meta, default=str))
        os.replace(tmp, folder / MARKER)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Own the run folder for this process; a stale lock (dead pid) is taken over."""
        lock = self.path / "LOCK"
        if lock.is_file():
            pid = lock.read_text().strip()
            if pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid)):
                raise MedcurateError(f"another build (pid {pid}) is running with the same inputs in {self.path}",
                                     hint="wait for it to finish, or stop it; its completed stages will be reused")
        lock.write_text(str(os.getpid()))
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                lock.unlink()

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def parts(folder: Path, prefix: str = "part-") -> list[Path]:
    """The spilled parquet parts of a stage, in row order."""
    return sorted(folder.glob(f"{prefix}*.parquet"))


def write_part(frame: pl.DataFrame, path: Path) -> Path:
    """Spill one part atomically (lz4: fast to write and read back; these files are temporary)."""
    tmp = path.with_suffix(".tmp")
    frame.write_parquet(tmp, compression="lz4", statistics=False)
    os.replace(tmp, path)
    return path


def unified(files: list[Path]) -> pl.DataFrame:
    """An empty frame with the schema `pl.concat(frames, how="diagonal_relaxed")` would give."""
    empties = [pl.DataFrame(schema=pl.read_parquet_schema(f)) for f in files]
    return pl.concat(empties, how="diagonal_relaxed") if empties else pl.DataFrame()


def read_parts(files: list[Path], like: pl.DataFrame | None = None) -> pl.DataFrame:
    """Parts concatenated in order, aligned to one schema (that of all parts unless `like` is given)."""
    like = unified(files) if like is None else like
    frames = [pl.read_parquet(f) for f in files]
    return pl.concat([like, *frames], how="diagonal_relaxed") if frames else like


def rows_in(files: list[Path]) -> list[int]:
    """Row count of each part, from the parquet footers."""
    return [pl.scan_parquet(f).select(pl.len()).collect().item() for f in files]
