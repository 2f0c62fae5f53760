"""Local registry: immutable versions, atomic push, refs, hash verification, versions, diff, CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from fixtures_hub import medqa_frame, write_build
from typer.testing import CliRunner

import curate
from curate import registry
from curate.record import record_id
from curate.registry.base import IntegrityError, NotFound, VersionExists
from curate.registry.local import LocalRegistry
from curate.registry.refs import RefError, parse_ref, semver_key, version_tag

V1_BUILD = "20260101-000000-00000001"
V2_BUILD = "20260102-000000-00000002"


def _edit(frame: pl.DataFrame, source_id: str, question: str) -> pl.DataFrame:
    """Edit one row's question (upstream change): its content id changes, source_id stays."""
    frame = frame.with_columns(
        pl.when(pl.col("source_id") == source_id).then(pl.lit(question)).otherwise(pl.col("question"))
        .alias("question"))
    row = frame.filter(pl.col("source_id") == source_id).row(0, named=True)
    new_id = record_id(row["question"], row["options"], row["answer"], row["context"])
    return frame.with_columns(pl.when(pl.col("source_id") == source_id).then(pl.lit(new_id))
                              .otherwise(pl.col("id")).alias("id"))


@pytest.fixture
def versions_built(builds: Path, data_dir: Path) -> dict[str, Path]:
    """v1: rows 1-250 train + 251-300 validation. v2: train drops rows 1-5, adds 301-320, edits the question
    of row 10 and the subject of row 20; validation unchanged."""
    frame = medqa_frame(data_dir, 0, 320)
    v1 = write_build(builds, "medqa-sft", {"train": frame.slice(0, 250), "validation": frame.slice(250, 50)},
                     build_id=V1_BUILD)
    train = pl.concat([frame.slice(5, 245), frame.slice(300, 20)])
    train = _edit(train, "10", "A 23-year-old woman presents with an edited question stem?")
    train = train.with_columns(pl.when(pl.col("source_id") == "20").then(pl.lit("Edited subject"))
                               .otherwise(pl.col("subject")).alias("subject"))
    v2 = write_build(builds, "medqa-sft", {"train": train, "validation": frame.slice(250, 50)},
                     build_id=V2_BUILD, source_sha="b" * 64)
    return {"v1": v1, "v2": v2}


def _push_both() -> tuple[registry.PushResult, registry.PushResult]:
    return (registry.push("medqa-sft", "1.0.0", build=V1_BUILD), registry.push("medqa-sft", "1.1.0", build=V2_BUILD))


def test_refs_and_semver() -> None:
    assert version_tag("1.2.0") == "v1.2.0" and version_tag("v2.0.0-rc.1") == "v2.0.0-rc.1"
    for bad in ("1.2", "01.2.0", "v1.2.0.0", "latest", "1.2.0+build"):
        with pytest.raises(RefError, match="not a semantic version"):
            version_tag(bad)
    ordered = ["v0.9.0", "v1.0.0-alpha", "v1.0.0-alpha.1", "v1.0.0-rc.1", "v1.0.0", "v1.2.0", "v1.10.0"]
    assert sorted(reversed(ordered), key=semver_key) == ordered
    assert parse_ref("org/ds@1.2.0").revision == "v1.2.0"
    assert parse_ref("ds@latest") == parse_ref("local/ds")
    with pytest.raises(RefError):
        parse_ref("../etc@v1.0.0")


def test_bare_name_uses_default_org(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_ref("medqa-sft@v1.0.0").repo_id == "local/medqa-sft"
    monkeypatch.setenv("MEDCURATE_ORG", "acme")
    assert parse_ref("medqa-sft").repo_id == "acme/medqa-sft"


def test_push_pull_load_roundtrip(work: Path, versions_built: dict[str, Path]) -> None:
    r1, r2 = _push_both()
    assert (r1.repo_id, r1.tag, r2.tag) == ("local/medqa-sft", "v1.0.0", "v1.1.0")
    ds = curate.load("local/medqa-sft@v1.0.0")
    for split, n in {"train": 250, "validation": 50}.items():
        built = pl.read_parquet(versions_built["v1"] / "data" / f"{split}-00000-of-00001.parquet")
        assert len(ds[split]) == n == built.height
        assert ds[split]["id"] == built["id"].to_list()
    assert ds["train"][0]["options"] == built_first_options(versions_built["v1"])
    # latest = highest semver, main = last pushed, a commit prefix resolves too
    assert registry.pull("medqa-sft").commit == r2.commit
    assert registry.pull("medqa-sft@latest").commit == r2.commit
    assert registry.pull("medqa-sft@main").commit == r2.commit
    assert registry.pull(f"medqa-sft@{r1.commit[:8]}").commit == r1.commit
    with pytest.raises(NotFound, match="no such version"):
        registry.pull("medqa-sft@v3.0.0")
    # the pushed card names the repo and tag; the manifest keeps the build's content hashes
    out = registry.pull("medqa-sft@v1.0.0", out=work / "pulled")
    assert sorted(str(p.relative_to(out.path)) for p in out.path.rglob("*") if p.is_file()) == [
        "README.md", "data/train-00000-of-00001.parquet", "data/validation-00000-of-00001.parquet", "manifest.json",
        "report.md"]  # the audit trail (rejects/, scores/, report) travels with the version
    card = (out.path / "README.md").read_text()
    assert 'curate.load("local/medqa-sft@v1.0.0")' in card
    assert "curate pull local/medqa-sft@v1.0.0 --out DIR" in card and "revision=" not in card
    import datasets

    assert {s: len(d) for s, d in datasets.load_dataset(str(out.path), cache_dir=str(work / "c")).items()} == {
        "train": 250, "validation": 50}
    built_manifest = json.loads((versions_built["v1"] / "manifest.json").read_text())
    assert out.manifest["output"] == built_manifest["output"]
    # each version holds its own read-only copy (no hard links: an edit of one cannot reach another; issue 10)
    commits = LocalRegistry().repo_dir("local/medqa-sft") / "commits"
    stored = [commits / c / "data" / "validation-00000-of-00001.parquet" for c in (r1.commit, r2.commit)]
    assert stored[0].stat().st_ino != stored[1].stat().st_ino
    assert all(p.stat().st_mode & 0o222 == 0 for p in stored)


def built_first_options(build: Path) -> list[dict]:
    return pl.read_parquet(build / "data" / "train-00000-of-00001.parquet")["options"][0].to_list()


def test_versions_are_immutable(work: Path, versions_built: dict[str, Path]) -> None:
    registry.push("medqa-sft", "1.0.0", build=V1_BUILD)
    stored = registry.pull("medqa-sft@v1.0.0").path
    before = {p: p.read_bytes() for p in stored.rglob("*") if p.is_file()}
    with pytest.raises(VersionExists, match=r"v1\.0\.0 already exists .* immutable"):
        registry.push("medqa-sft", "1.0.0", build=V2_BUILD)
    with pytest.raises(VersionExists):
        registry.push("medqa-sft", "v1.0.0", build=V2_BUILD)
    assert {p: p.read_bytes() for p in stored.rglob("*") if p.is_file()} == before
    assert [v.tag for v in registry.versions("medqa-sft")] == ["v1.0.0"]
    with pytest.raises(RefError):
        registry.push("medqa-sft", "1.0", build=V2_BUILD)


def test_corrupted_shard_is_caught_on_pull(work: Path, versions_built: dict[str, Path]) -> None:
    r1, _ = _push_both()
    shard = LocalRegistry().repo_dir("local/medqa-sft") / "commits" / r1.commit / "data" / "train-00000-of-00001.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"v1\.0\.0: data/train-00000-of-00001\.parquet is corrupted"):
        curate.load("medqa-sft@v1.0.0")
    assert len(curate.load("medqa-sft@v1.1.0")["train"]) == 265  # other versions unaffected


def test_corrupted_build_is_not_pushed(work: Path, versions_built: dict[str, Path]) -> None:
    shard = versions_built["v1"] / "data" / "train-00000-of-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(IntegrityError, match=r"train-00000-of-00001\.parquet is corrupted"):
        registry.push("medqa-sft", "1.0.0", build=V1_BUILD)
    assert not LocalRegistry().has_repo("local/medqa-sft") or registry.versions("medqa-sft") == []


_PUSH = "import sys; from curate import registry; registry.push('medqa-sft', sys.argv[1], build=sys.argv[2])"


def _push_process(version: str, build: str, **env: str) -> subprocess.Popen:
    folder = str(Path(os.environ["MEDCURATE_BUILDS"]) / "medqa-sft" / build)
    return subprocess.Popen([sys.executable, "-c", _PUSH, version, folder], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("kill_at", ["local-mid-copy", "local-before-tag"])
def test_killed_push_leaves_no_version(work: Path, versions_built: dict[str, Path], kill_at: str) -> None:
    registry.push("medqa-sft", "1.0.0", build=V1_BUILD)
    proc = _push_process("1.1.0", V2_BUILD, MEDCURATE_TEST_KILL_AT=kill_at)
    proc.communicate(timeout=60)
    assert proc.returncode == -9  # SIGKILLed at the checkpoint
    assert [v.tag for v in registry.versions("medqa-sft")] == ["v1.0.0"]
    with pytest.raises(NotFound):
        registry.pull("medqa-sft@v1.1.0")
    assert registry.pull("medqa-sft@latest").revision == "v1.0.0"
    # the same version pushes cleanly afterwards and the debris is swept
    registry.push("medqa-sft", "1.1.0", build=V2_BUILD)
    repo = LocalRegistry().repo_dir("local/medqa-sft")
    assert list((repo / ".staging").iterdir()) == []
    assert len(list((repo / "commits").iterdir())) == 2
    assert [v.tag for v in registry.versions("medqa-sft")] == ["v1.0.0", "v1.1.0"]


def test_concurrent_pushes_of_different_versions_both_land(work: Path, versions_built: dict[str, Path]) -> None:
    procs = [_push_process("1.0.0", V1_BUILD), _push_process("1.1.0", V2_BUILD), _push_process("1.1.0", V1_BUILD)]
    results = [(p.wait(timeout=120), p.stderr.read().decode()) for p in procs]
    assert results[0][0] == 0, results[0][1]
    assert sorted(rc for rc, _ in results[1:]) == [0, 1]  # exactly one of the two 1.1.0 pushes wins
    assert "VersionExists" in next(err for rc, err in results[1:] if rc == 1)
    infos = registry.versions("medqa-sft")
    assert [v.tag for v in infos] == ["v1.0.0", "v1.1.0"]
    for v in infos:
        registry.pull(f"medqa-sft@{v.tag}")  # both complete and verified


def test_versions_and_diff(work: Path, versions_built: dict[str, Path]) -> None:
    r1, r2 = _push_both()
    infos = registry.versions("medqa-sft")
    assert [(v.tag, v.rows, v.splits, v.commit) for v in infos] == [
        ("v1.0.0", 300, {"train": 250, "validation": 50}, r1.commit),
        ("v1.1.0", 315, {"train": 265, "validation": 50}, r2.commit),
    ]
    assert infos[0].recipe_sha256 == json.loads((versions_built["v1"] / "manifest.json").read_text())["recipe"]["sha256"]
    assert all(v.created for v in infos)

    d = registry.diff("medqa-sft", "v1.0.0", "1.1.0")
    train = next(s for s in d.splits if s.split == "train")
    old = pl.read_parquet(versions_built["v1"] / "data" / "train-00000-of-00001.parquet")
    new = pl.read_parquet(versions_built["v2"] / "data" / "train-00000-of-00001.parquet")
    assert sorted(train.removed) == sorted(old.filter(pl.col("source_id").is_in(["1", "2", "3", "4", "5"]))["id"])
    assert sorted(train.added) == sorted(new.filter(pl.col("source_id").cast(pl.Int32) > 300)["id"])
    by_source = {o: why for o, _n, why in train.changed}
    edited_old = old.filter(pl.col("source_id") == "10")["id"][0]
    subject_id = old.filter(pl.col("source_id") == "20")["id"][0]
    assert by_source == {edited_old: "source row edited", subject_id: "content"}
    assert train.unchanged == 250 - 5 - 2
    validation = next(s for s in d.splits if s.split == "validation")
    assert (validation.added, validation.removed, validation.changed, validation.unchanged) == ([], [], [], 50)
    fields = {path: (a, b) for path, a, b in d.fields}
    assert fields["sources[medqa].sha256"] == ("a" * 64, "b" * 64)
    assert fields["splits.train"] == (250, 265)
    assert not any(p.startswith("release") or p == "created" for p in fields)


def test_cli_push_versions_diff_pull(work: Path, versions_built: dict[str, Path]) -> None:
    from curate.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["push", "medqa-sft", "1.0.0", "--build", V1_BUILD])
    assert res.exit_code == 0, res.output
    assert "local/medqa-sft@v1.0.0" in res.output
    assert runner.invoke(app, ["push", "medqa-sft", "1.1.0"]).exit_code == 0  # LATEST build = v2
    again = runner.invoke(app, ["push", "medqa-sft", "1.0.0"])
    assert again.exit_code != 0 and isinstance(again.exception, VersionExists)
    res = runner.invoke(app, ["versions", "medqa-sft"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "v1.0.0" in res.output and "v1.1.0" in res.output and "315" in res.output
    res = runner.invoke(app, ["diff", "medqa-sft", "v1.0.0", "v1.1.0"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    train_row = next(line for line in res.output.splitlines() if "│ train" in line)
    assert [c.strip() for c in train_row.split("│")[1:8]] == ["train", "250", "265", "20", "5", "2", "243"]
    assert "sources[medqa].sha256" in res.output
    res = runner.invoke(app, ["pull", "medqa-sft@v1.0.0", "--out", str(work / "v1")])
    assert res.exit_code == 0, res.output
    assert pl.read_parquet(work / "v1" / "data" / "train-00000-of-00001.parquet").height == 250
    res = runner.invoke(app, ["pull", "medqa-sft@v1.0.0", "--out", str(work / "v1")])
    assert "not empty" in str(res.exception)


def test_registry_root_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MEDCURATE_REGISTRY", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert LocalRegistry().root == tmp_path / "medcurate" / "registry"


@pytest.mark.slow
def test_end_to_end_with_real_build(work: Path, builds: Path, data_dir: Path) -> None:
    """`curate build` twice (one source changed), push 1.0.0 / 1.1.0, versions, diff, pull, refuse re-push."""
    from curate.cli import app
    from curate.recipe import list_recipes

    if "medqa-sft" not in {r["name"] for r in list_recipes()}:
        pytest.skip("recipe medqa-sft not available yet")
    runner = CliRunner()
    src = data_dir / "medqa" / "train_subset1030.json"
    res = runner.invoke(app, ["build", "medqa-sft", "--source", f"medqa={src}", "--limit", "300"])
    assert res.exit_code == 0, res.output
    refused = runner.invoke(app, ["push", "medqa-sft", "1.0.0"])  # a --limit build is partial
    assert refused.exit_code == 1 and "--allow-partial" in str(refused.exception)
    assert runner.invoke(app, ["push", "medqa-sft", "1.0.0", "--allow-partial"]).exit_code == 0
    changed = work / "medqa_changed.json"
    rows = json.loads(src.read_text())[:300]
    rows = rows[10:] + json.loads(src.read_text())[300:320]
    changed.write_text(json.dumps(rows))
    res = runner.invoke(app, ["build", "medqa-sft", "--source", f"medqa={changed}"])
    assert res.exit_code == 0, res.output
    assert runner.invoke(app, ["push", "medqa-sft", "1.1.0"]).exit_code == 0
    d = registry.diff("medqa-sft", "v1.0.0", "v1.1.0")
    v1 = curate.load("medqa-sft@v1.0.0")
    v2 = curate.load("medqa-sft@v1.1.0")
    for s in d.splits:
        old_ids, new_ids = set(v1[s.split]["id"]), set(v2[s.split]["id"])
        assert set(s.added) == new_ids - old_ids and set(s.removed) == old_ids - new_ids
        assert len(s.added) >= 1 and len(s.removed) >= 1
    assert ("sources[medqa].sha256" in {f for f, _, _ in d.fields})
    assert [v.partial for v in registry.versions("medqa-sft")] == [True, False]
    again = runner.invoke(app, ["push", "medqa-sft", "1.0.0", "--allow-partial"])
    assert isinstance(again.exception, VersionExists)
    pulled = registry.pull("medqa-sft@v1.0.0", out=work / "pulled")
    from curate.card import parse_card_header

    header = parse_card_header((pulled.path / "README.md").read_text())
    counts = {s["name"]: s["num_examples"] for s in header["dataset_info"]["splits"]}
    assert counts == {s: pl.read_parquet(f).height for s, fs in pulled.split_files().items() for f in fs}
    shutil.rmtree(work / "pulled")


def test_push_refuses_to_publish_a_secret(work: Path, versions_built: dict[str, Path],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cr3t-" + "x" * 20
    monkeypatch.setenv("SOURCE_API_KEY", secret)
    manifest_path = versions_built["v1"] / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["sources"][0]["uri"] = f"https://user:{secret}@example.org/medqa.json"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(registry.RegistryError, match=r"manifest\.json would contain the value of \$SOURCE_API_KEY"):
        registry.push("medqa-sft", "1.0.0", build=V1_BUILD)
    assert not any(secret.encode() in p.read_bytes() for p in (work / "registry").rglob("*") if p.is_file())
