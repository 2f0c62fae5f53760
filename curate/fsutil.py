"""Small file-system helpers shared by builds, sources and the registry."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (used to sweep leftovers of killed runs)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def inside(root: Path, rel: str, *, what: str = "path") -> Path:
    """``root / rel`` when it stays inside ``root``; else ``ValueError`` saying why.

    The one containment check for every path that comes from a file we did not write ourselves
    (manifest ``output.files``, ``.commit.json`` files, Hub snapshots): a relative POSIX path with no
    ``..``, ``.`` or empty part, no absolute or drive prefix, no backslash. The check is lexical on
    purpose: the Hub cache stores snapshot files as symlinks into its blob store, so resolving links would
    refuse every Hub snapshot; a name cannot smuggle a link in, and content is checked by hash anyway.
    """
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
        raise ValueError(f"{what} {rel!r} is not a relative file path")
    parts = rel.split("/")
    if rel.startswith("/") or ":" in parts[0] or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{what} {rel!r} leaves its folder (absolute, empty or '..' part)")
    return Path(root) / rel
