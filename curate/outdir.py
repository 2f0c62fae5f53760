"""Output folders: check `--out` before any work, and own the temporary folders a build writes into.

`check_out_dir` runs before a source is read, a step runs or a teacher is called, so a bad `--out` costs
nothing (issue 10: a file, a path under a file, `.` or an unwritable folder used to fail only after every
step and every paid teacher call had run). `make_tmp` marks each temporary folder with `MARKER`, and
`clean_stale_tmp` removes only marked folders whose process is gone: a `.tmp-*-<pid>` folder the tool did
not make is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from curate.errors import MedcurateError
from curate.fsutil import pid_alive

#: File inside every temporary folder medcurate creates; its presence is what allows the sweep to remove it.
MARKER = ".medcurate-tmp"


class OutDirError(MedcurateError):
    """`--out` cannot receive a build or a pulled version."""


def check_out_dir(out: Path | str, *, option: str = "--out") -> Path:
    """`out` as a Path if it can become a new folder; else OutDirError saying why and what to do."""
    path = Path(out)
    hint = f"pass {option} a new or empty folder, e.g. {option} builds/my-run"
    if str(out).strip() == "":
        raise OutDirError(f"{option} is empty", hint=hint)
    absolute = Path(os.path.abspath(path))
    if Path.cwd().resolve().is_relative_to(path.resolve()):
        raise OutDirError(f"{option} {out} is the current folder or one of its parents; the output is written "
                          "to a temporary folder and renamed into place, which cannot replace a folder in use",
                          hint=hint)
    if path.is_file() or (path.exists() and not path.is_dir()):
        raise OutDirError(f"{option} {out} is a file, not a folder", hint=hint)
    if path.is_dir() and any(path.iterdir()):
        raise OutDirError(f"{option} {out} exists and is not empty", hint=hint)
    parent = absolute.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutDirError(f"{option} {out} lies under {parent}, which is a file", hint=hint)
    for ancestor in absolute.parents:
        if ancestor.exists() and not ancestor.is_dir():
            raise OutDirError(f"{option} {out} lies under {ancestor}, which is a file", hint=hint)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutDirError(f"{option} {out}: {parent} is not writable", hint=hint)
    return path


def make_tmp(final: Path) -> Path:
    """A fresh marked temporary folder next to `final`: ``.tmp-<final name>-<pid>/`` holding `MARKER`."""
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists() and (tmp / MARKER).is_file():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / MARKER).write_text(json.dumps({"pid": os.getpid(), "created": datetime.now(UTC).isoformat()}))
    return tmp


def finish_tmp(tmp: Path, final: Path) -> None:
    """Drop the marker and rename the complete folder into place."""
    (tmp / MARKER).unlink(missing_ok=True)
    os.replace(tmp, final)


def clean_stale_tmp(base: Path) -> list[Path]:
    """Remove temporary folders of killed runs: marked by `make_tmp` and owned by a pid that is gone."""
    removed = []
    for tmp in base.glob(".tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and (tmp / MARKER).is_file() and not pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed
