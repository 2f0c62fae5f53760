"""Versioned dataset registry: push builds as immutable tagged versions, pull them by tag.

Backends: ``local`` (a folder, the default; see :mod:`curate.registry.local`) and ``hub``
(Hugging Face Hub or any ``HF_ENDPOINT``; see :mod:`curate.registry.hub`).

Names: ``org/name`` or a bare ``name``, which means ``$MEDCURATE_ORG/name`` (default org ``local``).
References: ``org/name@v1.2.0`` (or ``@1.2.0``), ``@latest`` / no suffix (highest semver tag), a
branch (``@main``: the highest version, as ``load_dataset(repo)`` sees it) or a commit id (prefix of 7+ hex digits).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Literal

from curate.build import find_build
from curate.outdir import check_out_dir, clean_stale_tmp, finish_tmp, make_tmp
from curate.registry.base import (
    IntegrityError,
    NotFound,
    PushResult,
    Registry,
    RegistryError,
    Snapshot,
    VersionExists,
    VersionInfo,
    prepare_release,
)
from curate.registry.diff import VersionDiff, diff_snapshots
from curate.registry.refs import DatasetRef, default_org, parse_ref, parse_repo_id, version_tag

Backend = Literal["local", "hub"]

__all__ = [
    "DatasetRef", "IntegrityError", "NotFound", "PushResult", "RegistryError", "Snapshot", "VersionDiff",
    "VersionExists", "VersionInfo", "default_org", "diff", "find_build", "get_registry", "load", "parse_ref",
    "pull", "push", "versions",
]


def get_registry(kind: Backend = "local", **kwargs: Any) -> Registry:
    if kind == "local":
        from curate.registry.local import LocalRegistry

        return LocalRegistry(**kwargs)
    if kind == "hub":
        from curate.registry.hub import HubRegistry

        return HubRegistry(**kwargs)
    raise RegistryError(f"unknown registry backend {kind!r}", hint="use 'local' or 'hub'")


def _pick(repo_id: str, backend: Backend | None) -> Registry:
    """`backend`, or local when the local registry holds the repo, else hub."""
    if backend is not None:
        return get_registry(backend)
    local = get_registry("local")
    if local.has_repo(repo_id):
        return local
    return get_registry("hub")


def push(
    name: str,
    version: str,
    *,
    build: str | Path | None = None,
    to: Backend = "local",
    repo: str | None = None,
    private: bool = False,
    registry: Registry | None = None,
    force: bool = False,
    allow_partial: bool = False,
) -> PushResult:
    """Publish a build of recipe `name` as version `version` (tag ``v<version>``); never overwrites.

    A build with no rows is refused unless `force` (an empty version is almost always a failed teacher or
    a source format mismatch, and versions cannot be withdrawn). A `--limit` build needs `allow_partial`
    and is published marked partial."""
    tag = version_tag(version)  # validate before touching anything
    if to == "hub" and repo is None and "/" not in name and not os.environ.get("MEDCURATE_ORG"):
        raise RegistryError(f"pushing {name!r} to the Hub needs an owner",
                            hint=f"pass --repo ORG/{name} or set $MEDCURATE_ORG")
    org, repo_name = parse_repo_id(repo or name)
    build_dir = Path(build) if build is not None and Path(build).is_dir() else find_build(name, build)
    reg = registry or get_registry(to)
    release = prepare_release(build_dir, f"{org}/{repo_name}", tag, reg.kind, allow_partial=allow_partial)
    if not release.manifest.get("rows_out") and not force:
        raise RegistryError(f"build {build_dir} has no rows; refusing to publish an empty version",
                            hint="see its report.md and rejects/ for why; pass --force to publish it anyway")
    return reg.push(release, private=private)


def pull(ref: str, *, out: str | Path | None = None, backend: Backend | None = None) -> Snapshot:
    """Fetch and verify a version; with `out`, copy its files (card, manifest, data/, rejects/, scores/,
    report) there.

    Both backends treat `out` alike: refused unless new or empty (checked before anything is fetched), the
    version lands in a marked temporary folder next to it and is renamed into place only once verified, so a
    failed pull leaves `out` as it was."""
    r = parse_ref(ref)
    dest = check_out_dir(out) if out is not None else None
    reg = _pick(r.repo_id, backend)
    if dest is None:
        return reg.fetch(r.repo_id, r.revision)
    dest.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(dest.parent)
    tmp = make_tmp(dest)
    try:
        if reg.kind == "hub":
            snap = reg.fetch(r.repo_id, r.revision, out=tmp)  # type: ignore[call-arg]
            shutil.rmtree(tmp / ".cache", ignore_errors=True)  # huggingface_hub's download bookkeeping
        else:
            snap = reg.fetch(r.repo_id, r.revision)
            shutil.copytree(snap.path, tmp, ignore=shutil.ignore_patterns(".*"), dirs_exist_ok=True,
                            copy_function=shutil.copyfile)  # the user's copy is writable; the stored one is not
        if dest.exists():
            dest.rmdir()
        finish_tmp(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Snapshot(snap.repo_id, snap.revision, snap.commit, dest)


def load(ref: str, *, backend: Backend | None = None, cache_dir: str | Path | None = None, **kwargs: Any):
    """``org/name@v1.2.0`` -> ``datasets.DatasetDict`` (one split per data split), hashes verified."""
    import datasets

    snap = pull(ref, backend=backend)
    files = {split: [str(p) for p in paths] for split, paths in snap.split_files().items()}
    if cache_dir is None and os.environ.get("MEDCURATE_CACHE"):
        cache_dir = Path(os.environ["MEDCURATE_CACHE"]) / "datasets"
    return datasets.load_dataset("parquet", data_files=files, cache_dir=str(cache_dir) if cache_dir else None,
                                 **kwargs)


def versions(name: str, *, backend: Backend | None = None) -> list[VersionInfo]:
    org, repo_name = parse_repo_id(name)
    return _pick(f"{org}/{repo_name}", backend).versions(f"{org}/{repo_name}")


def diff(name: str, old: str, new: str, *, backend: Backend | None = None) -> VersionDiff:
    """Rows added / removed / changed per split and changed manifest fields between two versions."""
    a = parse_ref(f"{name}@{old}")
    b = parse_ref(f"{name}@{new}")
    reg = _pick(a.repo_id, backend)
    return diff_snapshots(reg.fetch(a.repo_id, a.revision), reg.fetch(b.repo_id, b.revision))
