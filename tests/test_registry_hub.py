"""Hub backend: the real huggingface_hub client against the loopback fake Hub (tests/fixtures_hub.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from fixtures_hub import medqa_frame, write_build

import curate
from curate import registry
from curate.registry import hub as hub_mod
from curate.registry.base import IntegrityError, NotFound, RegistryError, VersionExists

REPO = "acme/medqa-sft"


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_mod, "RETRY_BASE_DELAY", 0.01)


@pytest.fixture
def two_builds(builds: Path, data_dir: Path) -> tuple[Path, Path]:
    frame = medqa_frame(data_dir, 0, 240)
    b1 = write_build(builds, "medqa-sft", {"train": frame.head(200), "validation": frame.tail(40)},
                     build_id="20260101-000000-00000001")
    b2 = write_build(builds, "medqa-sft", {"train": frame.slice(10, 220)}, build_id="20260102-000000-00000002",
                     source_sha="b" * 64)
    return b1, b2


def _post_paths(hub) -> list[str]:
    return [p for m, p in hub.calls if m == "POST"]


def test_push_is_one_commit_then_tag(fake_hub, two_builds, fast_retries) -> None:
    result = registry.push("medqa-sft", "1.0.0", build="20260101-000000-00000001", to="hub", repo=REPO,
                           private=True)
    assert result.tag == "v1.0.0"
    posts = _post_paths(fake_hub)
    assert posts == [
        "/api/repos/create", "/api/validate-yaml", f"/api/datasets/{REPO}/preupload/main",
        f"/api/datasets/{REPO}/commit/main", f"/api/datasets/{REPO}/tag/{result.commit}",
    ]
    repo = fake_hub.repos[REPO]
    assert repo["private"] is True
    assert repo["tags"] == {"v1.0.0": result.commit}
    files = fake_hub.files(REPO, "v1.0.0")
    assert sorted(files) == ["README.md", "data/train-00000-of-00001.parquet",
                             "data/validation-00000-of-00001.parquet", "manifest.json", "report.md"]
    built = two_builds[0] / "data" / "train-00000-of-00001.parquet"
    assert files["data/train-00000-of-00001.parquet"] == built.read_bytes()
    manifest = json.loads(files["manifest.json"])
    assert manifest["release"]["tag"] == "v1.0.0" and manifest["release"]["repo"] == REPO
    assert f'load_dataset("{REPO}", revision="v1.0.0")' in files["README.md"].decode()


def test_existing_version_is_refused(fake_hub, two_builds, fast_retries) -> None:
    registry.push("medqa-sft", "1.0.0", build="20260101-000000-00000001", to="hub", repo=REPO)
    commits_before = len(fake_hub.repos[REPO]["commits"])
    with pytest.raises(VersionExists, match="v1.0.0 already exists on the Hub"):
        registry.push("medqa-sft", "1.0.0", build="20260102-000000-00000002", to="hub", repo=REPO)
    assert len(fake_hub.repos[REPO]["commits"]) == commits_before  # nothing committed


def test_retries_rate_limit_and_commit_conflict(fake_hub, two_builds, fast_retries) -> None:
    fake_hub.inject("commit", 429, 412)
    fake_hub.inject("tag", 429)
    result = registry.push("medqa-sft", "1.0.0", build="20260101-000000-00000001", to="hub", repo=REPO)
    commits = [p for p in _post_paths(fake_hub) if "/commit/" in p]
    tags = [p for p in _post_paths(fake_hub) if "/tag/" in p]
    assert len(commits) == 3 and len(tags) == 2
    assert fake_hub.repos[REPO]["tags"] == {"v1.0.0": result.commit}


def test_second_version_replaces_files_and_pull_resolves_refs(fake_hub, two_builds, fast_retries,
                                                              tmp_path: Path) -> None:
    r1 = registry.push("medqa-sft", "1.0.0", build="20260101-000000-00000001", to="hub", repo=REPO)
    r2 = registry.push("medqa-sft", "1.1.0", build="20260102-000000-00000002", to="hub", repo=REPO)
    # v1.1.0 has no validation split: its commit holds exactly its own files
    assert "data/validation-00000-of-00001.parquet" not in fake_hub.files(REPO, "v1.1.0")
    assert "data/validation-00000-of-00001.parquet" in fake_hub.files(REPO, "v1.0.0")

    old = curate.load(f"{REPO}@v1.0.0", backend="hub")
    assert {s: len(d) for s, d in old.items()} == {"train": 200, "validation": 40}
    assert registry.pull(f"{REPO}@latest", backend="hub").commit == r2.commit
    assert registry.pull(f"{REPO}@main", backend="hub").commit == r2.commit
    assert registry.pull(f"{REPO}@{r1.commit[:10]}", backend="hub").commit == r1.commit
    with pytest.raises(NotFound):
        registry.pull(f"{REPO}@v9.9.9", backend="hub")

    out = registry.pull(f"{REPO}@v1.1.0", backend="hub", out=tmp_path / "pulled")
    frame = pl.read_parquet(out.path / "data" / "train-00000-of-00001.parquet")
    expected = pl.read_parquet(two_builds[1] / "data" / "train-00000-of-00001.parquet")
    assert frame["id"].to_list() == expected["id"].to_list()

    infos = registry.versions(REPO, backend="hub")
    assert [(v.tag, v.rows, v.commit) for v in infos] == [("v1.0.0", 240, r1.commit), ("v1.1.0", 220, r2.commit)]

    d = registry.diff(REPO, "v1.0.0", "v1.1.0", backend="hub")
    train = next(s for s in d.splits if s.split == "train")
    assert (len(train.added), len(train.removed), len(train.changed)) == (30, 10, 0)


def test_corrupted_shard_on_the_hub_is_caught(fake_hub, two_builds, fast_retries) -> None:
    registry.push("medqa-sft", "1.0.0", build="20260101-000000-00000001", to="hub", repo=REPO)
    fake_hub.corrupt(REPO, "v1.0.0", "data/validation-00000-of-00001.parquet")
    with pytest.raises(IntegrityError, match=r"data/validation-00000-of-00001\.parquet is corrupted"):
        curate.load(f"{REPO}@v1.0.0", backend="hub")


def test_token_reaches_the_server_but_no_file(fake_hub, two_builds, fast_retries, work: Path, tmp_path: Path,
                                              capsys, caplog) -> None:
    token = os.environ["HF_TOKEN"]
    registry.push("medqa-sft", "1.0.0", build="20260101-000000-00000001", to="hub", repo=REPO)
    registry.push("medqa-sft", "1.0.0", build="20260101-000000-00000001", to="local", repo=REPO)
    registry.pull(f"{REPO}@v1.0.0", backend="hub", out=tmp_path / "pulled")
    registry.versions(REPO, backend="hub")
    assert fake_hub.auth and all(a == f"Bearer {token}" for a in fake_hub.auth)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 10
    leaks = [str(p) for p in written if token.encode() in p.read_bytes()]
    leaks += [f"hub:{path}" for repo in fake_hub.repos.values() for files in repo["commits"].values()
              for path, data in files.items() if token.encode() in data]
    captured = capsys.readouterr()
    assert token not in captured.out + captured.err + caplog.text
    assert leaks == []


def test_concurrent_pushes_of_different_versions_both_land(fake_hub, two_builds, fast_retries) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(registry.push, "medqa-sft", v, build=b, to="hub", repo=REPO)
                   for v, b in (("1.0.0", "20260101-000000-00000001"), ("1.1.0", "20260102-000000-00000002"))]
        r1, r2 = (f.result() for f in futures)
    repo = fake_hub.repos[REPO]
    assert repo["tags"] == {"v1.0.0": r1.commit, "v1.1.0": r2.commit}
    assert repo["branches"]["main"] in (r1.commit, r2.commit)
    for result, build in zip((r1, r2), two_builds, strict=True):
        files = fake_hub.files(REPO, result.tag)
        manifest = json.loads(files["manifest.json"])
        assert sorted(p for p in files if p.startswith("data/")) == manifest["output"]["files"]
        assert manifest["build_id"] == build.name


def test_killed_push_leaves_no_version(fake_hub, two_builds, fast_retries) -> None:
    registry.push("medqa-sft", "1.0.0", build="20260101-000000-00000001", to="hub", repo=REPO)
    code = ("from curate import registry; registry.push('medqa-sft', '1.1.0', build='20260102-000000-00000002', "
            f"to='hub', repo={REPO!r})")
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "MEDCURATE_TEST_KILL_AT": "hub-before-tag"},
                          capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()
    assert [v.tag for v in registry.versions(REPO, backend="hub")] == ["v1.0.0"]  # the commit landed untagged
    assert registry.pull(f"{REPO}@latest", backend="hub").revision == "v1.0.0"
    result = registry.push("medqa-sft", "1.1.0", build="20260102-000000-00000002", to="hub", repo=REPO)
    assert [v.tag for v in registry.versions(REPO, backend="hub")] == ["v1.0.0", "v1.1.0"]
    assert fake_hub.repos[REPO]["tags"]["v1.1.0"] == result.commit


def test_hub_push_needs_an_owner(fake_hub, two_builds, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDCURATE_ORG", raising=False)
    with pytest.raises(RegistryError, match="needs an owner"):
        registry.push("medqa-sft", "1.0.0", to="hub")
    assert fake_hub.calls == []
    monkeypatch.setenv("MEDCURATE_ORG", "acme")
    assert registry.push("medqa-sft", "1.0.0", to="hub").repo_id == REPO


def test_offline_hub_gives_a_clear_error(work: Path) -> None:
    with pytest.raises(RegistryError, match="offline mode"):
        curate.load("acme/not-local@v1.0.0")


@pytest.mark.live
@pytest.mark.skipif(os.environ.get("MEDCURATE_LIVE") != "1" or not os.environ.get("HF_TOKEN"),
                    reason="live Hub test: set MEDCURATE_LIVE=1, HF_TOKEN and MEDCURATE_LIVE_REPO=org/name")
def test_live_hub_roundtrip(builds: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    repo = os.environ.get("MEDCURATE_LIVE_REPO") or pytest.skip("set MEDCURATE_LIVE_REPO=org/name")
    frame = medqa_frame(data_dir, 0, 50)
    write_build(builds, "medqa-sft", {"train": frame})
    version = f"0.0.{int(os.environ.get('MEDCURATE_LIVE_PATCH', '0')) or __import__('time').time_ns() % 10**9}"
    result = registry.push("medqa-sft", version, to="hub", repo=repo, private=True)
    ds = curate.load(f"{repo}@{result.tag}", backend="hub")
    assert len(ds["train"]) == 50
