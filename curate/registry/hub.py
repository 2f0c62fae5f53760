"""Hugging Face Hub registry: one commit per version with every file, then tag ``vX.Y.Z``.

The endpoint is ``$HF_ENDPOINT`` read when the registry is created (so it works even when
huggingface_hub was imported first) and the token comes from the usual places (``HF_TOKEN``,
``huggingface-cli login``) unless passed. The token is handed to ``HfApi`` only: it never reaches a
log line, a card or a manifest.

Push protocol: create the repo (``exist_ok``), refuse if the tag exists, ``create_commit`` on main
with ``parent_commit`` = the current head, every file of the version as additions and every other file
as deletions (so the commit is exactly the version), then ``create_tag`` on that commit. A 429 answer
is retried after ``Retry-After`` (or exponential backoff); a 409/412 on the commit (main moved: a
concurrent push) is retried from the new head. Until the tag exists nothing is visible as a version:
a push killed after the commit leaves an untagged commit on main, never a half version.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from curate.registry.base import (
    MANIFEST,
    NotFound,
    PushResult,
    RegistryError,
    Release,
    Snapshot,
    VersionExists,
    VersionInfo,
    checkpoint,
    read_json,
    verify_data_files,
    version_info,
)
from curate.registry.refs import is_version, latest_tag, semver_key

T = TypeVar("T")

#: Retry policy (seconds); tests shrink the base delay.
RETRY_ATTEMPTS = 6
RETRY_BASE_DELAY = 1.0
RETRY_MAX_DELAY = 60.0
KEEP_FILES = (".gitattributes",)


def _status(err: Exception) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def _retry_after(err: Exception, attempt: int) -> float:
    response = getattr(err, "response", None)
    header = response.headers.get("Retry-After") if response is not None else None
    if header is not None:
        try:
            return min(float(header), RETRY_MAX_DELAY)
        except ValueError:
            pass
    return min(RETRY_BASE_DELAY * 2**attempt, RETRY_MAX_DELAY)


def with_retries(call: Callable[[], T], *, what: str, retry_on: tuple[int, ...] = (429, 500, 502, 503, 504),
                 on_retry: Callable[[int], None] | None = None) -> T:
    """Run `call`, retrying on the given HTTP statuses with backoff; other errors propagate."""
    from huggingface_hub.errors import HfHubHTTPError

    for attempt in range(RETRY_ATTEMPTS):
        try:
            return call()
        except HfHubHTTPError as err:
            status = _status(err)
            if status not in retry_on or attempt == RETRY_ATTEMPTS - 1:
                raise
            time.sleep(_retry_after(err, attempt) if status == 429 else min(RETRY_BASE_DELAY * 2**attempt,
                                                                              RETRY_MAX_DELAY))
            if on_retry is not None:
                on_retry(status)
    raise RegistryError(f"{what}: gave up after {RETRY_ATTEMPTS} attempts")  # pragma: no cover


class HubRegistry:
    kind = "hub"

    def __init__(self, *, endpoint: str | None = None, token: str | None = None):
        from huggingface_hub import HfApi

        self.endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
        self.api = HfApi(endpoint=self.endpoint, token=token, library_name="medcurate")

    def _hf_errors(self, err: Exception, repo_id: str, revision: str | None = None) -> RegistryError:
        from huggingface_hub.errors import (
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        if isinstance(err, RepositoryNotFoundError):
            return NotFound(f"{repo_id} not found on the Hub ({self.api.endpoint})",
                            hint="check the name, and that your token can read private repos")
        if isinstance(err, RevisionNotFoundError):
            return NotFound(f"{repo_id}@{revision}: no such tag, branch or commit on the Hub")
        if isinstance(err, OfflineModeIsEnabled):
            return RegistryError(f"{repo_id}: the Hub is unreachable in offline mode (HF_HUB_OFFLINE=1)",
                                 hint="unset HF_HUB_OFFLINE, or use the local registry (--to local)")
        return RegistryError(f"{repo_id}: Hub request failed: {type(err).__name__}: {err}")

    # --- push ----------------------------------------------------------------------------------------
    def has_repo(self, repo_id: str) -> bool:
        try:
            return self.api.repo_exists(repo_id, repo_type="dataset")
        except Exception:  # noqa: BLE001 - offline / unreachable = not here
            return False

    def _refs(self, repo_id: str) -> tuple[dict[str, str], dict[str, str]]:
        refs = with_retries(lambda: self.api.list_repo_refs(repo_id, repo_type="dataset"), what="list refs")
        return ({b.name: b.target_commit for b in refs.branches}, {t.name: t.target_commit for t in refs.tags})

    def _exists(self, release: Release) -> VersionExists:
        return VersionExists(
            f"{release.repo_id} {release.tag} already exists on the Hub ({self.api.endpoint}); "
            "published versions are immutable",
            hint=f"push a new version, or see `curate versions {release.repo_id} --from hub`",
        )

    def push(self, release: Release, *, private: bool = False) -> PushResult:
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete
        from huggingface_hub.errors import HfHubHTTPError

        repo_id = release.repo_id
        try:
            with_retries(lambda: self.api.create_repo(repo_id, repo_type="dataset", private=private,
                                                      exist_ok=True), what="create repo")
            commit = None
            branch = "main"
            for _attempt in range(RETRY_ATTEMPTS):
                branches, tags = self._refs(repo_id)
                if release.tag in tags:
                    raise self._exists(release)
                branch = self._release_branch(repo_id, release.tag, tags, branches)
                head = branches.get(branch) or branches.get("main")
                existing = set(self.api.list_repo_files(repo_id, repo_type="dataset", revision=head)) if head else set()
                operations: list[Any] = [
                    CommitOperationAdd(path_in_repo=rel, path_or_fileobj=src if isinstance(src, bytes) else str(src))
                    for rel, src in release.files.items()
                ]
                operations += [CommitOperationDelete(path_in_repo=p) for p in sorted(existing)
                               if p not in release.files and p not in KEEP_FILES]
                try:
                    info = with_retries(
                        lambda ops=operations, parent=head, rev=branch: self.api.create_commit(
                            repo_id, ops, repo_type="dataset", parent_commit=parent, revision=rev,
                            commit_message=f"Release {release.tag}",
                            commit_description=f"medcurate build {release.manifest.get('build_id')}",
                        ),
                        what="commit",
                    )
                except HfHubHTTPError as err:
                    if _status(err) in (409, 412):  # main moved under us: recompute from the new head
                        time.sleep(min(RETRY_BASE_DELAY, 1.0))
                        continue
                    raise
                commit = info.oid
                break
            if commit is None:
                raise RegistryError(f"{repo_id}: main kept moving; gave up after {RETRY_ATTEMPTS} commit attempts",
                                    hint="retry the push when the concurrent pushes are done")
            checkpoint("hub-before-tag")
            try:
                with_retries(lambda: self.api.create_tag(repo_id, tag=release.tag, revision=commit,
                                                         repo_type="dataset",
                                                         tag_message=f"medcurate {release.tag}"), what="tag")
            except HfHubHTTPError as err:
                if _status(err) == 409:
                    raise self._exists(release) from None
                raise
            finally:
                if branch != "main":  # the tag keeps the commit; the side branch was only a vehicle
                    with contextlib.suppress(Exception):
                        self.api.delete_branch(repo_id, branch=branch, repo_type="dataset")
        except (VersionExists, RegistryError):
            raise
        except Exception as err:  # noqa: BLE001 - turn library errors into user-facing ones
            raise self._hf_errors(err, repo_id) from None
        url = f"{self.api.endpoint}/datasets/{repo_id}/tree/{release.tag}"
        return PushResult("hub", repo_id, release.tag, commit, url, sorted(release.files))

    def _release_branch(self, repo_id: str, tag: str, tags: dict[str, str], branches: dict[str, str]) -> str:
        """`main` when `tag` becomes the highest version, else a side branch created from main.

        `main` must show the highest published version (what `load_dataset(repo)` and the viewer read),
        so a patch of an older line (v1.0.1 after v2.0.0) is committed on `release-<tag>`, tagged, and
        the branch deleted. Two versions pushed at the same moment may both see themselves as highest;
        main then holds whichever committed last.
        """
        if latest_tag([*tags, tag]) == tag:
            return "main"
        branch = f"release-{tag}"
        if branch not in branches:
            with_retries(lambda: self.api.create_branch(repo_id, branch=branch, revision=branches.get("main"),
                                                        repo_type="dataset", exist_ok=True), what="branch")
        return branch

    # --- read ----------------------------------------------------------------------------------------
    def resolve(self, repo_id: str, revision: str | None) -> str:
        if revision is not None:
            return revision
        try:
            _, tags = self._refs(repo_id)
        except Exception as err:  # noqa: BLE001
            raise self._hf_errors(err, repo_id) from None
        tag = latest_tag(list(tags))
        if tag is None:
            raise NotFound(f"{repo_id} has no version tags on the Hub")
        return tag

    def fetch(self, repo_id: str, revision: str | None, *, out: Path | None = None) -> Snapshot:
        rev = self.resolve(repo_id, revision)
        try:
            info = self.api.dataset_info(repo_id, revision=rev)
            path = Path(self.api.snapshot_download(repo_id, repo_type="dataset", revision=info.sha,
                                                   local_dir=str(out) if out else None))
        except Exception as err:  # noqa: BLE001
            raise self._hf_errors(err, repo_id, rev) from None
        if not (path / MANIFEST).is_file():
            raise RegistryError(f"{repo_id}@{rev} has no manifest.json: not a medcurate dataset version",
                                hint="use datasets.load_dataset for datasets not published by medcurate")
        verify_data_files(path, read_json(path / MANIFEST, what=f"{repo_id}@{rev}"), what=f"{repo_id}@{rev}")
        return Snapshot(repo_id=repo_id, revision=rev, commit=info.sha, path=path)

    def versions(self, repo_id: str) -> list[VersionInfo]:
        import json

        try:
            _, tags = self._refs(repo_id)
            out = []
            for tag, commit in tags.items():
                if not is_version(tag):
                    continue
                path = self.api.hf_hub_download(repo_id, MANIFEST, repo_type="dataset", revision=commit)
                out.append(version_info(tag, commit, json.loads(Path(path).read_text())))
        except Exception as err:  # noqa: BLE001
            raise self._hf_errors(err, repo_id) from None
        return sorted(out, key=lambda v: semver_key(v.tag))
