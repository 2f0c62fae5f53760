"""Local folder registry: immutable commits, tags and a main branch, no server.

Layout under the root (``$MEDCURATE_REGISTRY``, default ``~/.cache/medcurate/registry``)::

    <org>/<name>/commits/<commit>/        README.md, manifest.json, data/<split>-XXXXX-of-YYYYY.parquet,
                                          .commit.json ({files: {path: sha256}, parent, tag, created})
    <org>/<name>/refs/tags/<tag>.json     {"commit", "created"}          <- a version is visible iff this exists
    <org>/<name>/refs/heads/main.json     {"commit"}                     (the highest version)
    <org>/<name>/README.md                configs -> the highest version's data files only, so that
                                          `datasets.load_dataset("<org>/<name> folder")` loads that version
                                          instead of concatenating every version's shards
    <org>/<name>/.staging/<pid>-<uuid>/   pushes in progress (invisible; swept when their process is gone)
    <org>/<name>/.lock                    held only for the short publish step

Every version holds its own copy of each file (a reflink where the file system can share blocks,
else a plain copy), made read-only: an in-place edit of one stored file (as root, read-only does not
stop it) damages that version only, and `verify` names it on the next pull. Hard links between versions
saved one copy of each unchanged shard but let one edit corrupt every version sharing it (issue 10).
Every ref file is checked when read: a damaged tag or branch file is an error naming it, and the sweep
of unreferenced commits never runs while a ref cannot be read. A push copies and hashes every file into ``.staging`` without any lock, then, holding the repo lock,
checks the tag is free, renames the staged folder to ``commits/<id>`` and writes the tag file by
atomic rename. A push killed at any point leaves either nothing visible or the whole version; two
pushes of different versions both land (they only serialise on the rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from filelock import FileLock

from curate.fsutil import pid_alive
from curate.registry.base import (
    MANIFEST,
    IntegrityError,
    NotFound,
    PushResult,
    Release,
    Snapshot,
    VersionExists,
    VersionInfo,
    checkpoint,
    member,
    now_iso,
    read_json,
    sha256_file,
    verify_data_files,
    version_info,
)
from curate.registry.refs import is_commit_id, is_version, latest_tag, parse_repo_id, semver_key

COMMIT_META = ".commit.json"
_FICLONE = 0x40049409  # linux/fs.h: share the source's blocks (btrfs, xfs, ...)


def _clone(src: Path, dest: Path) -> None:
    """Copy `src` to `dest` (a reflink when the file system supports it), then make it read-only."""
    try:
        import fcntl

        with open(src, "rb") as fin, open(dest, "wb") as fout:
            fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
    except (OSError, ImportError):
        shutil.copyfile(src, dest)
    os.chmod(dest, 0o444)


def read_ref(path: Path) -> dict[str, Any]:
    """A tag or branch file: ``{"commit": <hex id>, ...}``; anything else is an IntegrityError naming it."""
    data = read_json(path, what="registry ref")
    if not isinstance(data, dict) or not isinstance(data.get("commit"), str) or not is_commit_id(data["commit"]):
        raise IntegrityError(f"registry ref {path} does not name a commit (expected {{\"commit\": \"<hex id>\"}})",
                             hint="restore the file from a backup, or write the commit id it should point to")
    return data


def default_root() -> Path:
    """``$MEDCURATE_REGISTRY``, else ``$XDG_CACHE_HOME/medcurate/registry`` (``~/.cache/...``)."""
    if env := os.environ.get("MEDCURATE_REGISTRY"):
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "medcurate" / "registry"


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("w") as fh:
        json.dump(data, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_repo_card(repo: Path, release: Release, commit: str) -> None:
    """The repo folder's README.md: a `configs:` block naming the highest version's data files.

    Without it `load_dataset(<repo folder>)` globs `**/train-*` and concatenates every version (and
    the published rejects); with it the folder loads like the Hub repo's `main`.
    """
    import yaml

    splits = sorted({Path(f).name.split("-", 1)[0] for f in release.data_files()})
    header = {"configs": [{"config_name": "default", "data_files": [
        {"split": s, "path": f"commits/{commit}/data/{s}-*"} for s in splits]}]}
    text = (f"---\n{yaml.safe_dump(header, sort_keys=False)}---\n\n# {release.repo_id} (medcurate local registry)\n\n"
            f"`load_dataset` on this folder loads the highest version, {release.tag} (commit {commit[:12]}).\n"
            f"Load a given version with `curate.load(\"{release.repo_id}@vX.Y.Z\")`.\n")
    tmp = repo / f".README.md.{uuid.uuid4().hex}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, repo / "README.md")


class LocalRegistry:
    kind = "local"

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else default_root()

    # --- layout ------------------------------------------------------------------------------------
    def repo_dir(self, repo_id: str) -> Path:
        org, name = parse_repo_id(repo_id)
        return self.root / org / name

    def has_repo(self, repo_id: str) -> bool:
        return (self.repo_dir(repo_id) / "refs").is_dir()

    def _tag_file(self, repo: Path, tag: str) -> Path:
        return repo / "refs" / "tags" / f"{tag}.json"

    def tags(self, repo_id: str) -> dict[str, dict[str, Any]]:
        folder = self.repo_dir(repo_id) / "refs" / "tags"
        if not folder.is_dir():
            return {}
        return {p.name[: -len(".json")]: read_ref(p) for p in folder.glob("*.json") if not p.name.startswith(".")}

    def branches(self, repo_id: str) -> dict[str, str]:
        folder = self.repo_dir(repo_id) / "refs" / "heads"
        if not folder.is_dir():
            return {}
        return {p.name[: -len(".json")]: read_ref(p)["commit"] for p in folder.glob("*.json")
                if not p.name.startswith(".")}

    # --- push ----------------------------------------------------------------------------------------
    def push(self, release: Release, *, private: bool = False) -> PushResult:
        repo = self.repo_dir(release.repo_id)
        if self._tag_file(repo, release.tag).exists():
            raise self._exists(release)
        staging = repo / ".staging" / f"{os.getpid()}-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            hashes = self._stage(release, staging)
            with FileLock(str(repo / ".lock")):
                self._sweep(repo)
                if self._tag_file(repo, release.tag).exists():
                    raise self._exists(release)
                heads = repo / "refs" / "heads" / "main.json"
                parent = read_ref(heads)["commit"] if heads.exists() else None
                highest = latest_tag([*self.tags(release.repo_id), release.tag]) == release.tag
                created = now_iso()
                meta = {"files": hashes, "parent": parent, "tag": release.tag, "created": created}
                commit = hashlib.sha1(json.dumps(meta, sort_keys=True).encode()).hexdigest()
                (staging / COMMIT_META).write_text(json.dumps(meta, indent=2))
                os.chmod(staging / COMMIT_META, 0o444)
                (repo / "commits").mkdir(exist_ok=True)
                os.rename(staging, repo / "commits" / commit)
                checkpoint("local-before-tag")
                _write_json_atomic(self._tag_file(repo, release.tag), {"commit": commit, "created": created})
                if highest:  # main = the highest version, as on the Hub
                    _write_json_atomic(heads, {"commit": commit})
                    write_repo_card(repo, release, commit)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return PushResult("local", release.repo_id, release.tag, commit, str(repo / "commits" / commit),
                          sorted(hashes))

    def _exists(self, release: Release) -> VersionExists:
        return VersionExists(
            f"{release.repo_id} {release.tag} already exists in the local registry ({self.root}); "
            "published versions are immutable",
            hint=f"push a new version (e.g. bump to the next patch) or inspect it with "
            f"`curate versions {release.repo_id}`",
        )

    def _stage(self, release: Release, staging: Path) -> dict[str, str]:
        hashes: dict[str, str] = {}
        expected = release.manifest["output"]["file_sha256"]
        for i, (rel, src) in enumerate(release.files.items()):
            dest = member(staging, rel, what=f"push of {release.build_dir}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(src, bytes):
                dest.write_bytes(src)
                os.chmod(dest, 0o444)
            else:
                _clone(src, dest)
            hashes[rel] = sha256_file(dest)
            if i == 0:
                checkpoint("local-mid-copy")
        for rel in release.data_files():
            if hashes[rel] != expected[rel]:
                raise IntegrityError(f"{rel} changed while it was copied from {release.build_dir}",
                                     hint="do not modify a build folder while pushing it")
        return hashes

    def _sweep(self, repo: Path) -> None:
        """Remove staging folders of dead processes and commits no ref points at (holding the lock).

        Every ref is read first and any unreadable one raises (naming the file) before anything is removed:
        a commit is deleted only when every ref could be read and none points at it."""
        for folder in (repo / ".staging").glob("*"):
            pid = folder.name.split("-", 1)[0]
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)
        refs = {read_ref(p)["commit"] for kind in ("tags", "heads")
                for p in (repo / "refs" / kind).glob("*.json") if not p.name.startswith(".")}
        for folder in (repo / "commits").glob("*"):
            if folder.name not in refs:
                shutil.rmtree(folder, ignore_errors=True)

    # --- read ----------------------------------------------------------------------------------------
    def resolve(self, repo_id: str, revision: str | None) -> tuple[str, str | None]:
        """revision (None = latest semver tag, tag, branch or commit prefix) -> (commit, tag or None)."""
        if not self.has_repo(repo_id):
            raise NotFound(f"{repo_id} is not in the local registry ({self.root})",
                           hint="push it with `curate push NAME VERSION`, or set $MEDCURATE_REGISTRY")
        tags = self.tags(repo_id)
        if revision is None:
            tag = latest_tag(list(tags))
            if tag is None:
                raise NotFound(f"{repo_id} has no versions yet")
            return tags[tag]["commit"], tag
        if revision in tags:
            return tags[revision]["commit"], revision
        branches = self.branches(repo_id)
        if revision in branches:
            return branches[revision], None
        if is_commit_id(revision):
            commits = [p.name for p in (self.repo_dir(repo_id) / "commits").glob(f"{revision}*")]
            if len(commits) == 1:
                return commits[0], None
        known = ", ".join(sorted(tags, key=semver_key)) if tags else "none"
        raise NotFound(f"{repo_id}@{revision}: no such version, branch or commit",
                       hint=f"versions: {known}; branches: {', '.join(branches) or 'none'}")

    def fetch(self, repo_id: str, revision: str | None) -> Snapshot:
        commit, tag = self.resolve(repo_id, revision)
        folder = self.repo_dir(repo_id) / "commits" / commit
        self.verify(folder, f"{repo_id}@{tag or revision or commit[:12]}")
        return Snapshot(repo_id=repo_id, revision=tag or revision, commit=commit, path=folder)

    @staticmethod
    def verify(folder: Path, what: str) -> None:
        meta_path = folder / COMMIT_META
        if not meta_path.is_file():
            raise IntegrityError(f"{what}: {meta_path} is missing; the stored version is damaged")
        meta = read_json(meta_path, what=what)
        files = meta.get("files") if isinstance(meta, dict) else None
        if not isinstance(files, dict):
            raise IntegrityError(f"{what}: {meta_path} has no `files` mapping; the stored version is damaged")
        commit = hashlib.sha1(json.dumps(meta, sort_keys=True).encode()).hexdigest()
        if commit != folder.name:
            raise IntegrityError(f"{what}: {meta_path} does not hash to its commit id {folder.name[:12]} "
                                 f"(recomputed {commit[:12]}); the stored version was altered")
        hashed: dict[str, str] = {}
        for rel, expected in files.items():
            path = member(folder, rel, what=what)
            if not path.is_file():
                raise IntegrityError(f"{what}: {rel} is missing ({path})")
            actual = hashed[rel] = sha256_file(path)
            if actual != expected:
                raise IntegrityError(
                    f"{what}: {rel} is corrupted: sha256 {actual[:16]}… != published {expected[:16]}… ({path})",
                    hint="the local registry copy is damaged; push the build again as a new version",
                )
        if MANIFEST not in files:
            raise IntegrityError(f"{what}: {MANIFEST} is not among the committed files")
        verify_data_files(folder, read_json(folder / MANIFEST, what=what), what=what, hashed=hashed)

    def versions(self, repo_id: str) -> list[VersionInfo]:
        if not self.has_repo(repo_id):
            raise NotFound(f"{repo_id} is not in the local registry ({self.root})")
        out = []
        for tag, ref in self.tags(repo_id).items():
            manifest = read_json(self.repo_dir(repo_id) / "commits" / ref["commit"] / MANIFEST,
                                 what=f"{repo_id}@{tag}")
            info = version_info(tag, ref["commit"], manifest)
            info.created = ref.get("created") or info.created
            out.append(info)
        return sorted(out, key=lambda v: semver_key(v.tag) if is_version(v.tag) else (-1,))
