"""What both registry backends share: errors, release staging, content hashes, verification."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from curate.card import redact, render_dataset_card, split_files
from curate.errors import InputError, MedcurateError
from curate.fsutil import inside, sha256_file  # noqa: F401 - re-exported
from curate.registry.refs import version_tag

MANIFEST = "manifest.json"
CARD = "README.md"
_CHUNK = 1 << 20


class RegistryError(MedcurateError):
    """A registry operation failed (backend unreachable, bad layout, ...)."""


class VersionExists(RegistryError):
    """The version is already published: versions are immutable."""


class NotFound(RegistryError):
    """No such repo, version, tag, branch or commit."""


class IntegrityError(RegistryError):
    """A file's bytes do not match the content hash recorded when it was published."""


def member(folder: Path, rel: str, *, what: str) -> Path:
    """``folder / rel`` for a path read from a manifest or commit file; IntegrityError when it would leave
    ``folder`` (absolute, ``..``, a symlink out). Every registry path from outside goes through here."""
    try:
        return inside(folder, rel, what="file")
    except ValueError as err:
        raise IntegrityError(f"{what}: {err}; refusing a version whose files are not inside it",
                             hint="this build or repo was crafted or damaged: do not use it") from None


def read_json(path: Path, *, what: str) -> Any:
    """A JSON file the registry wrote (manifest, ref, commit metadata); a clear error naming it otherwise."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IntegrityError(f"{what}: {path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise IntegrityError(f"{what}: {path} is not readable JSON ({type(err).__name__}: {err})",
                             hint="the stored file is damaged; restore it from a backup or remove it") from None


def output_digest(file_sha256: list[str]) -> str:
    """``manifest.output.sha256``: sha256 over the data files' sha256 digests, in ``output.files`` order."""
    total = hashlib.sha256()
    for sha in file_sha256:
        total.update(bytes.fromhex(sha))
    return total.hexdigest()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def checkpoint(name: str) -> None:
    """Crash-test hook: ``MEDCURATE_TEST_KILL_AT=<name>`` SIGKILLs this process here (tests only)."""
    if os.environ.get("MEDCURATE_TEST_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class Release:
    """One version ready to publish: repo-relative path -> local file or bytes."""

    repo_id: str
    version: str
    tag: str
    manifest: dict[str, Any]
    files: dict[str, Path | bytes]
    build_dir: Path

    def data_files(self) -> list[str]:
        return [p for p in self.files if p.startswith("data/")]


@dataclass
class PushResult:
    backend: str
    repo_id: str
    tag: str
    commit: str
    location: str
    files: list[str] = field(default_factory=list)


@dataclass
class VersionInfo:
    tag: str
    commit: str
    created: str | None
    rows: int | None
    splits: dict[str, int]
    recipe_sha256: str | None
    build_id: str | None
    output_sha256: str | None
    partial: bool = False  # built with --limit (pushed with --allow-partial)


@dataclass
class Snapshot:
    """A resolved, verified version on local disk."""

    repo_id: str
    revision: str | None
    commit: str
    path: Path

    @property
    def manifest(self) -> dict[str, Any]:
        return read_json(self.path / MANIFEST, what=f"{self.repo_id}@{self.revision}")

    def split_files(self) -> dict[str, list[Path]]:
        what = f"{self.repo_id}@{self.revision}"
        return {s: [member(self.path, f, what=what) for f in fs] for s, fs in split_files(self.manifest).items()}


class Registry(Protocol):
    kind: str

    def push(self, release: Release, *, private: bool = False) -> PushResult: ...
    def versions(self, repo_id: str) -> list[VersionInfo]: ...
    def fetch(self, repo_id: str, revision: str | None) -> Snapshot: ...
    def has_repo(self, repo_id: str) -> bool: ...


def read_manifest(build_dir: Path) -> dict[str, Any]:
    path = build_dir / MANIFEST
    if not path.is_file():
        raise InputError("no manifest.json: not a complete build folder", file=str(path),
                         hint="run `curate build NAME` first, or pass --build with an existing build id")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"manifest is not valid JSON ({err.msg})", file=str(path), row=err.lineno) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("output"), dict):
        raise InputError("manifest has no `output` mapping: not a build manifest", file=str(path), field="output")
    return manifest


def verify_data_files(folder: Path, manifest: dict[str, Any], *, what: str,
                      hashed: dict[str, str] | None = None) -> None:
    """Check every data file listed in ``manifest.output.file_sha256`` and that no unlisted shard exists.

    ``hashed`` maps relative paths to sha256 values the caller already computed from the files, so
    large shards are not read twice.
    """
    output = manifest.get("output") if isinstance(manifest, dict) else None
    output = output if isinstance(output, dict) else {}
    hashes: dict[str, str] = output.get("file_sha256") or {}
    listed = output.get("files") or []
    if not listed or not isinstance(listed, list) or not isinstance(hashes, dict):
        raise IntegrityError(f"{what}: manifest.json lists no data files (output.files)",
                             hint="rebuild with the current `curate build`")
    if len(set(listed)) != len(listed):
        raise IntegrityError(f"{what}: manifest.json lists a data file twice (output.files)")
    actuals: list[str] = []
    for rel in listed:
        path = member(folder, rel, what=what)
        if not rel.startswith("data/"):
            raise IntegrityError(f"{what}: data file {rel!r} is not under data/ (output.files)")
        if not path.is_file():
            raise IntegrityError(f"{what}: data file {rel} is missing ({path})")
        expected = hashes.get(rel)
        if expected is None:
            raise IntegrityError(f"{what}: manifest.json has no sha256 for {rel} (output.file_sha256)")
        actual = (hashed or {}).get(rel) or sha256_file(path)
        if actual != expected:
            raise IntegrityError(
                f"{what}: {rel} is corrupted: sha256 {actual[:16]}… != published {expected[:16]}… ({path})",
                hint="delete the local copy and pull again; if it persists the stored version is damaged",
            )
        actuals.append(actual)
    if output.get("sha256") != output_digest(actuals):
        raise IntegrityError(
            f"{what}: manifest.json output.sha256 {str(output.get('sha256'))[:16]}… does not match its data files "
            f"(recomputed {output_digest(actuals)[:16]}…)",
            hint="the manifest was edited or damaged; rebuild, or pull the version again",
        )
    extra = sorted(
        str(p.relative_to(folder)) for p in (folder / "data").rglob("*") if p.is_file()
    ) if (folder / "data").is_dir() else []
    unlisted = [p for p in extra if p not in listed]
    if unlisted:
        raise IntegrityError(f"{what}: data files not in manifest.json: {', '.join(unlisted)}",
                             hint="a version holds exactly the files its manifest lists")


_SECRET_ENV = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|CREDENTIAL)", re.I)


def known_secrets() -> dict[str, str]:
    """Secret values this process can see: env vars with secret-looking names and the stored HF token."""
    found = {f"${k}": v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 8}
    try:
        from huggingface_hub import get_token

        token = get_token()
    except Exception:  # noqa: BLE001 - no token store is fine
        token = None
    if token and len(token) >= 8:
        found.setdefault("the Hugging Face token", token)
    return found


def assert_no_secrets(files: dict[str, bytes]) -> None:
    """Refuse to publish generated files (card, manifest) that contain a known secret value."""
    secrets = known_secrets()
    for rel, data in files.items():
        for name, value in secrets.items():
            if value.encode() in data:
                raise RegistryError(
                    f"{rel} would contain the value of {name}; refusing to publish a secret",
                    hint="remove the secret from the recipe or source URI (use environment variables) and rebuild",
                )


def audit_files(build_dir: Path, manifest: dict[str, Any]) -> dict[str, Path]:
    """The audit trail published with every version: rejects/, scores/ and the report (md, html, PNGs).

    They sit outside the card's `configs:` data files (`data/<split>-*`), so `load_dataset` on the
    version loads only the data, while `curate pull` brings the whole trail back.
    """
    output = manifest.get("output") or {}
    rels = list(output.get("rejects") or []) + list(output.get("scores") or [])
    rels += [r for r in ("report.md", "report.html") if (build_dir / r).is_file()]
    if (build_dir / "report").is_dir():
        rels += sorted(f"report/{p.name}" for p in (build_dir / "report").glob("*.png"))
    files = {rel: member(build_dir, rel, what=f"build {build_dir}") for rel in rels}
    missing = [r for r, path in files.items() if not path.is_file()]
    if missing:
        raise InputError(f"build folder lacks files its manifest lists: {', '.join(missing)}",
                         file=str(build_dir), hint="rebuild it with `curate build`")
    return files


def prepare_release(build_dir: Path, repo_id: str, version: str, backend: str, *,
                    allow_partial: bool = False) -> Release:
    """Verify a build folder and assemble the files of version `version` (manifest + card re-rendered).

    A build made with `--limit` read only part of its sources: publishing it needs `allow_partial`,
    and the version is then marked `release.partial` (shown by `curate versions`).
    """
    tag = version_tag(version)
    manifest = read_manifest(build_dir)
    partial = manifest.get("limit") is not None
    if partial and not allow_partial:
        raise RegistryError(
            f"build {build_dir.name} was made with --limit {manifest['limit']}: it holds only part of its sources",
            hint="rebuild without --limit, or pass --allow-partial to publish it marked as partial",
        )
    verify_data_files(build_dir, manifest, what=f"build {build_dir}")
    release_manifest = redact(dict(manifest))
    release_manifest["release"] = {
        "repo": repo_id, "version": tag[1:], "tag": tag, "pushed": now_iso(), "backend": backend,
        "build_dir": build_dir.name, "partial": partial,
    }
    files: dict[str, Path | bytes] = {rel: member(build_dir, rel, what=f"build {build_dir}")
                                      for rel in manifest["output"]["files"]}
    files.update(audit_files(build_dir, manifest))
    files[CARD] = render_dataset_card(release_manifest, build_dir).encode()
    files[MANIFEST] = (json.dumps(release_manifest, indent=2, ensure_ascii=False) + "\n").encode()
    assert_no_secrets({k: v for k, v in files.items() if isinstance(v, bytes)})
    return Release(repo_id=repo_id, version=tag[1:], tag=tag, manifest=release_manifest, files=files,
                   build_dir=build_dir)


def version_info(tag: str, commit: str, manifest: dict[str, Any]) -> VersionInfo:
    release = manifest.get("release") or {}
    return VersionInfo(
        tag=tag, commit=commit, created=release.get("pushed") or manifest.get("created"),
        rows=manifest.get("rows_out"), splits=dict(manifest.get("splits") or {}),
        recipe_sha256=(manifest.get("recipe") or {}).get("sha256"), build_id=manifest.get("build_id"),
        output_sha256=(manifest.get("output") or {}).get("sha256"),
        partial=bool(release.get("partial") or manifest.get("limit") is not None),
    )
