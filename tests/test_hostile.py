"""Hostile inputs (issue 10): damaged refs, crafted build folders and Hub repos, bad --out and recipe names,
misbehaving teachers, huge rows. Each test failed on the code before its fix; the source-reader attacks
live in tests/test_hostile_sources.py (issue 12a)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import polars as pl
import pytest
from fixtures_hub import medqa_frame, write_build

import curate
from curate import registry
from curate.errors import MedcurateError
from curate.registry.base import IntegrityError
from curate.registry.local import LocalRegistry

REPO = "acme/medqa-sft"
B1, B2, B3 = "20260101-000000-00000001", "20260102-000000-00000002", "20260103-000000-00000003"


@pytest.fixture
def three_builds(builds: Path, data_dir: Path) -> list[Path]:
    frame = medqa_frame(data_dir, 0, 90)
    return [write_build(builds, "medqa-sft", {"train": frame.slice(i * 30, 30)}, build_id=b, source_sha=c * 64)
            for i, (b, c) in enumerate(((B1, "a"), (B2, "b"), (B3, "c")))]


def _repo() -> Path:
    return LocalRegistry().repo_dir("local/medqa-sft")


def _overwrite(path: Path, text: str) -> None:
    """Edit a stored (read-only) file the way a careless user or a disk error would."""
    os.chmod(path, 0o644)
    path.write_text(text)


# --- 1. a damaged ref never lets a push's sweep delete a published version ----------------------------------


def test_damaged_tag_file_stops_the_sweep_and_names_the_file(work: Path, three_builds: list[Path]) -> None:
    r1 = registry.push("medqa-sft", "1.0.0", build=B1)
    registry.push("medqa-sft", "1.1.0", build=B2)
    tag = _repo() / "refs" / "tags" / "v1.0.0.json"
    _overwrite(tag, '{"commit": "' + r1.commit[:20])  # truncated by a full disk
    with pytest.raises(IntegrityError, match=r"v1\.0\.0\.json is not readable JSON"):
        registry.push("medqa-sft", "1.2.0", build=B3)
    assert (_repo() / "commits" / r1.commit / "manifest.json").is_file()  # v1.0.0's data survived
    _overwrite(tag, json.dumps({"commit": r1.commit}))  # repaired: everything is still there
    assert len(curate.load("medqa-sft@v1.0.0")["train"]) == 30


def test_tag_and_branch_files_without_a_commit_are_clear_errors(work: Path, three_builds: list[Path]) -> None:
    registry.push("medqa-sft", "1.0.0", build=B1)
    _overwrite(_repo() / "refs" / "heads" / "main.json", "{}")
    with pytest.raises(IntegrityError, match=r"main\.json does not name a commit"):
        registry.pull("medqa-sft@main")
    _overwrite(_repo() / "refs" / "tags" / "v1.0.0.json", "<html>not json</html>")
    with pytest.raises(IntegrityError, match=r"v1\.0\.0\.json is not readable JSON"):
        registry.versions("medqa-sft")


def test_version_manifest_that_is_not_json_is_a_clear_error(work: Path, three_builds: list[Path]) -> None:
    r1 = registry.push("medqa-sft", "1.0.0", build=B1)
    manifest = _repo() / "commits" / r1.commit / "manifest.json"
    _overwrite(manifest, "{not json")
    with pytest.raises(IntegrityError, match=r"manifest\.json is not readable JSON"):
        registry.versions("medqa-sft")


def test_stored_files_are_not_shared_between_versions(work: Path, builds: Path, data_dir: Path) -> None:
    frame = medqa_frame(data_dir, 0, 30)
    for b in (B1, B2):  # two builds with the same shard bytes
        write_build(builds, "medqa-sft", {"train": frame}, build_id=b)
    r1 = registry.push("medqa-sft", "1.0.0", build=B1)
    r2 = registry.push("medqa-sft", "1.1.0", build=B2)
    shard = _repo() / "commits" / r1.commit / "data" / "train-00000-of-00001.parquet"
    assert shard.stat().st_mode & 0o222 == 0  # stored read-only
    os.chmod(shard, 0o644)
    with shard.open("r+b") as fh:  # an in-place edit (root ignores the read-only bit)
        fh.seek(100)
        fh.write(b"\0" * 8)
    with pytest.raises(IntegrityError, match="corrupted"):
        curate.load("medqa-sft@v1.0.0")
    assert r2.commit != r1.commit and len(curate.load("medqa-sft@v1.1.0")["train"]) == 30


# --- 4. a crafted build folder cannot write outside the registry ---------------------------------------------


def test_push_of_a_build_whose_manifest_escapes_is_refused(work: Path, data_dir: Path) -> None:
    build = work / "x1" / "x2" / "x3" / "x4" / "x5" / "bld"
    (build / "data").mkdir(parents=True)
    rel = "data/" + "../" * 6 + "escape.parquet"  # from the build: work/x1/; from the registry staging: work/
    (work / "x1" / "escape.parquet").parent.mkdir(exist_ok=True)
    medqa_frame(data_dir, 0, 5).write_parquet(work / "x1" / "escape.parquet")
    sha = hashlib.sha256((work / "x1" / "escape.parquet").read_bytes()).hexdigest()
    manifest = {"name": "evil", "build_id": "bld", "recipe": {"name": "evil", "sha256": "0" * 64}, "sources": [],
                "steps": [], "rows_in": 5, "rows_out": 5, "rows_rejected": 0, "splits": {"train": 5},
                "output": {"sha256": hashlib.sha256(bytes.fromhex(sha)).hexdigest(), "files": [rel],
                           "file_sha256": {rel: sha}, "columns": []}}
    (build / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="leaves its folder"):
        registry.push("evil", "1.0.0", build=str(build))
    assert not (work / "escape.parquet").exists()


# --- 3 and 5. Hub pulls: containment, recomputed hashes, a non-empty --out, no mixed folder on failure --------


def test_hub_manifest_pointing_at_a_local_file_is_refused(fake_hub, builds: Path, data_dir: Path,
                                                          work: Path) -> None:
    write_build(builds, "medqa-sft", {"train": medqa_frame(data_dir, 0, 30)}, build_id=B1)
    registry.push("medqa-sft", "1.0.0", build=B1, to="hub", repo=REPO)
    secret = work / "private.parquet"  # a local file the hostile repo wants `curate.load` to return
    medqa_frame(data_dir, 500, 507).write_parquet(secret)
    sha = hashlib.sha256(secret.read_bytes()).hexdigest()
    files = fake_hub.files(REPO, "v1.0.0")
    manifest = json.loads(files.pop("manifest.json"))
    files.pop("data/train-00000-of-00001.parquet")
    manifest["output"].update(files=[str(secret)], file_sha256={str(secret): sha})
    files["manifest.json"] = json.dumps(manifest).encode()
    with pytest.raises(IntegrityError, match="leaves its folder"):
        curate.load(f"{REPO}@v1.0.0", backend="hub")


def test_hub_manifest_with_a_forged_output_sha256_is_refused(fake_hub, builds: Path, data_dir: Path) -> None:
    write_build(builds, "medqa-sft", {"train": medqa_frame(data_dir, 0, 30)}, build_id=B1)
    registry.push("medqa-sft", "1.0.0", build=B1, to="hub", repo=REPO)
    files = fake_hub.files(REPO, "v1.0.0")
    manifest = json.loads(files["manifest.json"])
    manifest["output"]["sha256"] = "f" * 64  # claims to be another dataset's content
    files["manifest.json"] = json.dumps(manifest).encode()
    with pytest.raises(IntegrityError, match="output.sha256"):
        registry.pull(f"{REPO}@v1.0.0", backend="hub")


def test_hub_pull_refuses_a_non_empty_out_and_leaves_nothing_on_failure(fake_hub, builds: Path, data_dir: Path,
                                                                       work: Path) -> None:
    write_build(builds, "medqa-sft", {"train": medqa_frame(data_dir, 0, 30)}, build_id=B1)
    registry.push("medqa-sft", "1.0.0", build=B1, to="hub", repo=REPO)
    mine = work / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("my notes")
    with pytest.raises(MedcurateError, match="not empty"):
        registry.pull(f"{REPO}@v1.0.0", out=mine, backend="hub")
    assert [p.name for p in mine.iterdir()] == ["README.md"] and (mine / "README.md").read_text() == "my notes"
    fake_hub.corrupt(REPO, "v1.0.0", "data/train-00000-of-00001.parquet")
    with pytest.raises(IntegrityError, match="corrupted"):
        registry.pull(f"{REPO}@v1.0.0", out=work / "fresh", backend="hub")
    assert sorted(p.name for p in work.iterdir() if "fresh" in p.name) == []


# --- 2, 10 and 11. recipe names, templates, YAML, --out, temporary folders ------------------------------------


def _recipe(work: Path, data_dir: Path, *, name: str = "hostile", steps: str = "  - validate: {}\n",
            path: str | None = None, extra: str = "") -> Path:
    """A small recipe over real MedQA rows, written into ./recipes/ of the scratch cwd."""
    folder = work / "recipes"
    folder.mkdir(exist_ok=True)
    recipe = folder / f"{hashlib.sha256(name.encode()).hexdigest()[:8] if name != 'hostile' else name}.yaml"
    recipe.write_text(
        f"name: {json.dumps(name)}\ndescription: hostile inputs\nlicense: mit\n"
        f"sources:\n  - name: medqa\n    format: medqa\n"
        f"    path: {path or data_dir / 'medqa' / 'train_subset1030.json'}\n"
        f"steps:\n{steps}{extra}")
    return recipe


@pytest.mark.parametrize("name", ["../escape", "a/b", "ABSOLUTE", "", ".."])
def test_recipe_names_that_are_not_safe_folder_names_are_refused(work: Path, data_dir: Path, name: str) -> None:
    from curate.build import run_build
    from curate.errors import RecipeError

    name = str(work / "abs") if name == "ABSOLUTE" else name
    recipe = _recipe(work, data_dir, name=name)
    with pytest.raises(RecipeError, match="name"):
        run_build(str(recipe), limit=5)
    assert not (work / "escape").exists() and not (work / "builds" / "LATEST").exists()


def test_stale_temp_cleanup_removes_only_folders_the_tool_marked(work: Path, data_dir: Path) -> None:
    from curate.build import run_build
    from curate.outdir import MARKER

    recipe = _recipe(work, data_dir)
    base = work / "builds" / "hostile"
    mine = base / ".tmp-photos-999999"  # looks like a stale build temp folder, but medcurate never made it
    mine.mkdir(parents=True)
    (mine / "holiday.jpg").write_bytes(b"\xff\xd8")
    stale = base / ".tmp-20260101-000000-deadbeef-999998"
    stale.mkdir()
    (stale / MARKER).write_text("{}")
    result = run_build(str(recipe), limit=5)
    assert (mine / "holiday.jpg").is_file()
    assert not stale.exists()
    assert not (result.path / MARKER).exists()


@pytest.mark.parametrize("kind", ["file", "under_file", "dot"])
def test_bad_out_is_refused_before_any_source_is_read(work: Path, data_dir: Path, kind: str) -> None:
    from curate.build import run_build
    from curate.outdir import OutDirError

    (work / "notes.txt").write_text("keep me")
    out = {"file": work / "notes.txt", "under_file": work / "notes.txt" / "build", "dot": Path(".")}[kind]
    recipe = _recipe(work, data_dir, path=str(work / "missing.jsonl"))  # reading it would fail: --out must fail first
    with pytest.raises(OutDirError, match="--out"):
        run_build(str(recipe), out=out)
    assert (work / "notes.txt").read_text() == "keep me"


def test_cli_bad_out_is_an_error_not_a_traceback(work: Path, data_dir: Path) -> None:
    import subprocess
    import sys

    (work / "notes.txt").write_text("keep me")
    recipe = _recipe(work, data_dir)
    proc = subprocess.run([sys.executable, "-c", "from curate.cli import main; main()", "build", str(recipe),
                           "--limit", "5", "--out", str(work / "notes.txt" / "b"), "-q"],
                          capture_output=True, text=True, cwd=work, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "lies under" in proc.stderr and "notes.txt" in proc.stderr


@pytest.mark.parametrize("template", ["{question} {foo}", 'Reply as JSON {"answer": "X"}: {question}', "{question"])
def test_bad_custom_template_is_a_recipe_error_at_load(work: Path, data_dir: Path, template: str) -> None:
    from curate.build import run_build
    from curate.errors import RecipeError

    steps = "  - validate: {}\n  - template:\n      templates:\n        mcq: [" + json.dumps(template) + "]\n"
    recipe = _recipe(work, data_dir, steps=steps, path=str(work / "missing.jsonl"))
    with pytest.raises(RecipeError, match=r"steps\.1\.template\.templates"):
        run_build(str(recipe))


#: 10 x 10^6 = 10^7 scalars once expanded (kept small so the old code, which expanded it, only took seconds).
BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]\n" for i in range(6))


def test_yaml_alias_bomb_is_refused_and_listing_skips_it(work: Path, data_dir: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    from curate.errors import RecipeError
    from curate.recipe import list_recipes, load_recipe

    _recipe(work, data_dir)
    bomb = work / "recipes" / "bomb.yaml"
    bomb.write_text(BOMB + "name: bomb\ndescription: [*g]\nlicense: mit\n")
    with pytest.raises(RecipeError, match="aliases expand to"):
        load_recipe(str(bomb))
    names = [r["name"] for r in list_recipes()]
    assert "hostile" in names and "bomb" not in names
    assert "skipping recipe file" in caplog.text and "bomb.yaml" in caplog.text


# --- 8 and 9. curation steps ---------------------------------------------------------------------------------


def test_gold_answer_pointing_at_an_empty_option_is_rejected(medqa_train: pl.DataFrame, cur_ctx) -> None:
    from fixtures_curation import run_step

    rows = medqa_train.head(20)
    blanked = [None, "   "]  # row 0: the gold option's text is null; row 1: blank

    def blank_gold(i: int, opts: list[dict], answer: str) -> list[dict]:
        return [{**o, "text": blanked[i]} if o["label"] == answer and i < 2 else o for o in opts]

    rows = rows.with_columns(pl.Series("options", [blank_gold(i, o, a) for i, (o, a) in
                                                   enumerate(zip(rows["options"].to_list(), rows["answer"], strict=True))],
                                       dtype=rows.schema["options"]))
    result = run_step("validate", rows, cur_ctx)
    rejected = dict(zip(result.rejected["id"], result.rejected["reason"], strict=True))
    assert rejected == {rows["id"][0]: "answer_option_empty", rows["id"][1]: "answer_option_empty"}


def test_one_huge_row_has_bounded_dedup_cost(medqa_train: pl.DataFrame, cur_ctx) -> None:
    """A 6 MB question (about 1 M words of real MedQA text): the MinHash work for it is capped."""
    import tracemalloc

    from fixtures_curation import run_step

    from curate.minhash import MAX_SHINGLES, shingles
    from curate.textnorm import tokenize

    rows = medqa_train.head(200)
    giant = " ".join(rows["question"].to_list())
    giant = (giant + " ") * (6_000_000 // len(giant))
    frame = pl.concat([rows, rows.head(1).with_columns(pl.lit(giant).alias("question"), pl.lit("giant").alias("id"))])
    sh = shingles(tokenize(pl.Series([giant.lower()])), 5)
    assert int(sh.offsets[1]) == MAX_SHINGLES
    tracemalloc.start()
    try:
        result = run_step("dedup", frame, cur_ctx)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "giant" in result.kept["id"].to_list()
    assert peak < 400 * 2**20, f"dedup held {peak / 2**20:.0f} MiB of arrays for one huge row"
