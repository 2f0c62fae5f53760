"""Hostile inputs (issue 10): damaged refs, crafted build folders and Hub repos, bad --out and recipe names,
misbehaving teachers, huge rows. Each test failed on the code before its fix; the source-reader attacks
live in tests/test_hostile_sources.py (issue 12a)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from fixtures_hub import medqa_frame, write_build

import curate
from curate import registry
from curate.errors import MedcurateError
from curate.registry.base import IntegrityError
from curate.registry.local import LocalRegistry
from tests.test_teacher import TRANSPORTS

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


# --- 6 and 7, and the teacher's time and size limits -----------------------------------------------------------

SECRET = "sk-live-medcurate-hostile-7c1e2b9d4a"


def _cot_recipe(work: Path, *, teacher: str = "{profile: vllm-local, max_retries: 0}") -> None:
    from curate.resources import recipes_dir

    recipe = (recipes_dir() / "medqa-cot.yaml").read_text().replace("teacher: vllm-local", f"teacher: {teacher}")
    assert teacher in recipe
    (work / "recipes").mkdir(exist_ok=True)
    (work / "recipes" / "medqa-cot.yaml").write_text(recipe)


def _build(*args: str):
    from typer.testing import CliRunner

    from curate.cli import app

    return CliRunner().invoke(app, ["build", "medqa-cot", *args])


def test_teacher_error_bodies_are_short_and_redacted(data_dir: Path, work: Path, scripted_server,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from synth.testing import Reply, last_user, oracle

    monkeypatch.setenv("MEDCURATE_TEST_KEY", SECRET)
    _cot_recipe(work, teacher="{profile: vllm-local, api_key_env: MEDCURATE_TEST_KEY, max_retries: 0}")
    echo = json.dumps({"error": {"message": f"Invalid key in 'Authorization: Bearer {SECRET}' (also tried "
                                            "api_key=sk-otherkey12345678)", "headers": {"authorization": SECRET}},
                       "padding": "x" * 5000})

    def responder(request: dict):
        if int(hashlib.sha256(last_user(request).encode()).hexdigest(), 16) % 2:
            return Reply(status=401, error_body=echo)
        return oracle(request)

    scripted_server.responder = responder
    result = _build("--source", f"medqa={data_dir}/medqa/train_subset1030.json", "--limit", "8",
                    "--teacher-url", scripted_server.url, "--teacher-model", "scripted", "-q")
    assert result.exit_code == 0, result.output + repr(result.exception)
    build = next((work / "builds" / "medqa-cot").glob("2*"))
    rejects = pl.read_parquet(build / "rejects" / "cot.parquet")
    details = rejects.filter(pl.col("reason") == "teacher_error")["detail"].to_list()
    assert details and all("HTTP 401: Invalid key in 'Authorization: Bearer ***'" in d for d in details)
    assert all("sk-otherkey" not in d and "padding" not in d and len(d) < 300 for d in details)
    leaked = [str(p) for p in work.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaked == [] and SECRET not in result.output


@pytest.mark.parametrize("garbage", [
    {"choices": [{}]},
    {"choices": [{"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "stop"}]},
    {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Answer: A"}, "finish_reason": None}]},
])
def test_garbage_teacher_replies_are_never_cached(tmp_path: Path, garbage: dict) -> None:
    from synth.cache import CallCache
    from synth.client import TeacherClient, TeacherError
    from synth.config import TeacherProfile
    from synth.testing import Reply, ScriptedServer

    msgs = [{"role": "user", "content": "Which vitamin deficiency causes scurvy?"}]

    async def ask(profile: TeacherProfile, cache: CallCache):
        async with TeacherClient(profile, cache) as client:
            return await client.chat(msgs, {"seed": 1}, template="t@1")

    with ScriptedServer(lambda req: Reply("x", extra=garbage)) as srv:
        profile = TeacherProfile(model="scripted", urls=[srv.url], max_retries=1, backoff_base_s=0.01)
        cache = CallCache(tmp_path / "calls.sqlite")
        with pytest.raises(TeacherError, match="invalid completion"):
            asyncio.run(ask(profile, cache))
        assert len(cache) == 0
        srv.responder = lambda req: Reply("Vitamin C.")
        assert asyncio.run(ask(profile, cache)).text == "Vitamin C."  # the healthy server was asked
        assert len(cache) == 1


def test_a_bad_body_cached_by_an_older_version_is_a_miss(tmp_path: Path) -> None:

    from synth.cache import CallCache
    from synth.client import TeacherClient
    from synth.config import TeacherProfile
    from synth.testing import Reply, ScriptedServer

    msgs = [{"role": "user", "content": "Q"}]
    with ScriptedServer(lambda req: Reply("A real answer.")) as srv:
        profile = TeacherProfile(model="scripted", urls=[srv.url], max_retries=0)
        cache = CallCache(tmp_path / "calls.sqlite")
        client = TeacherClient(profile, cache)
        cache.put(client.key(msgs, {}, "t@1"), model="scripted", template="t@1", request={}, response={"choices": [{}]})

        async def ask():
            async with client:
                return await client.chat(msgs, {}, template="t@1")

        assert asyncio.run(ask()).text == "A real answer."
        assert len(srv.log) == 1


@contextlib.contextmanager
def _stalling_server(first_bytes: bytes) -> Iterator[str]:
    """A server that answers POSTs with headers (Content-Length 5000) and maybe a few body bytes, then stops."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            request = conn.recv(65536)
            if request.startswith(b"GET"):
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                conn.close()
                continue
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n" + first_bytes)
            stop.wait(30)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        stop.set()
        listener.close()


@pytest.mark.parametrize("first_bytes", [b'{"ch', b""], ids=["part-of-the-body", "headers-only"])
@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_stalled_response_body_fails_on_the_idle_read_timeout(tmp_path: Path, transport: str, first_bytes: bytes) -> None:
    """A server that sends headers (and maybe a few body bytes) and then stops: the call fails after
    read_timeout_s, not timeout_s. pyreqwest, asked for a streamed response, waits for its read buffer to fill
    before it hands the response over: with any buffer the headers-only stall hid inside that wait until
    timeout_s, so the transport asks for an empty buffer (`streamed_read_buffer_limit(0)`)."""
    from synth.client import TeacherClient, TeacherError
    from synth.config import TeacherProfile

    with _stalling_server(first_bytes) as url:
        profile = TeacherProfile(model="m", urls=[url], max_retries=0, timeout_s=25, read_timeout_s=0.5,
                                 **TRANSPORTS[transport])

        async def ask():
            async with TeacherClient(profile) as client:
                await client.chat([{"role": "user", "content": "Q"}], {}, template="t@1")

        with pytest.raises(TeacherError, match=r"stalled: no bytes for 0\.5s"):
            asyncio.run(ask())


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_a_call_cancelled_while_its_body_stalls_stays_cancelled(tmp_path: Path, transport: str) -> None:
    """The idle-read watch (synth/transport.py `_IdleWatch`) turns only its own cancellations into a stalled-body
    retry: a caller's cancellation (here `wait_for`) while a body stalls comes out as a cancellation, at once."""
    from synth.client import TeacherClient
    from synth.config import TeacherProfile

    with _stalling_server(b'{"ch') as url:
        profile = TeacherProfile(model="m", urls=[url], max_retries=3, timeout_s=25, read_timeout_s=5,
                                 **TRANSPORTS[transport])

        async def ask():
            async with TeacherClient(profile) as client:
                t0 = time.monotonic()
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(client.chat([{"role": "user", "content": "Q"}], {}, template="t@1"), 1.0)
                return time.monotonic() - t0, client.stats

        waited, stats = asyncio.run(ask())
        assert waited < 3 and stats.retries == 0 and stats.errors == {}


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_oversized_teacher_response_is_refused(tmp_path: Path, transport: str) -> None:

    from synth.client import TeacherClient, TeacherError
    from synth.config import TeacherProfile
    from synth.testing import Reply, ScriptedServer

    with ScriptedServer(lambda req: Reply("x" * (3 << 20))) as srv:
        profile = TeacherProfile(model="scripted", urls=[srv.url], max_retries=2, max_response_bytes=1 << 20,
                                 **TRANSPORTS[transport])

        async def ask():
            async with TeacherClient(profile) as client:
                try:
                    await client.chat([{"role": "user", "content": "Q"}], {}, template="t@1")
                finally:
                    ask.stats = client.stats

        with pytest.raises(TeacherError, match="exceeds max_response_bytes=1048576"):
            asyncio.run(ask())
        assert len(srv.log) == 1 and ask.stats.errors == {"oversized_body": 1}  # not retried


# --- empty results: failed teacher, all-rejected source, push of an empty build --------------------------------


def test_build_whose_teacher_failed_on_every_call_fails_unless_allowed(data_dir: Path, work: Path,
                                                                       scripted_server) -> None:
    from synth.testing import Reply

    _cot_recipe(work)
    scripted_server.responder = lambda req: Reply("Answer: A", delay=2.0)
    args = ("--source", f"medqa={data_dir}/medqa/train_subset1030.json", "--limit", "4",
            "--teacher-url", scripted_server.url, "--teacher-model", "scripted", "--teacher-timeout", "0.3", "-q")
    result = _build(*args)
    assert result.exit_code == 1, result.output
    assert "teacher failed on every call" in str(result.exception) and "no answer within 0.3s" in str(result.exception)
    assert not (work / "builds" / "medqa-cot" / "LATEST").exists()
    with pytest.raises(MedcurateError, match="no build of"):
        registry.push("medqa-cot", "1.0.0")
    allowed = _build(*args, "--allow-empty")
    assert allowed.exit_code == 0, allowed.output
    assert (work / "builds" / "medqa-cot" / "LATEST").is_file()
    with pytest.raises(MedcurateError, match="no rows; refusing to publish"):
        registry.push("medqa-cot", "1.0.0", allow_partial=True)  # a --limit build: partial, and empty
    assert registry.push("medqa-cot", "1.0.0", force=True, allow_partial=True).tag == "v1.0.0"


def test_source_whose_every_row_is_rejected_keeps_its_rejects_and_says_why(work: Path, data_dir: Path) -> None:
    from curate.build import find_build, run_build
    from curate.build_checks import EmptyBuildError

    rows = [json.loads(line) for line in (data_dir / "medqa" / "test.jsonl").read_text().splitlines()[:6]]
    src = work / "answers_as_text.jsonl"
    src.write_text("".join(json.dumps({"q": r["question"], "opts": r["options"], "gold": r["answer"]}) + "\n"
                           for r in rows))  # the gold answer is the option text, but the recipe says "label"
    recipe = work / "recipes" / "mismatch.yaml"
    recipe.parent.mkdir(exist_ok=True)
    recipe.write_text(f"""name: mismatch
description: answer format mismatch
license: mit
sources:
  - name: mine
    format: generic
    path: {src}
    columns: {{question: q, options: opts, answer: gold, answer_format: label}}
steps:
  - validate: {{}}
""")
    with pytest.raises(EmptyBuildError) as info:
        run_build(str(recipe))
    message = str(info.value)
    assert f"source 'mine' ({src.name}" in message or f"source 'mine' ({src}" in message
    assert "all 6 rows rejected" in message and "row 1:" in message
    build = next((work / "builds" / "mismatch").glob("2*"))
    rejected = pl.read_parquet(build / "rejects" / "source-mine.parquet")
    assert rejected.height == 6 and f"builds/mismatch/{build.name}" in message
    with pytest.raises(MedcurateError, match="no build of"):
        find_build("mismatch")


def test_a_source_that_loses_every_row_beside_a_good_one_is_named(work: Path, data_dir: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    from curate.build import run_build

    src = work / "bad.jsonl"
    src.write_text("".join(json.dumps({"q": f"Question {i}?", "opts": {"A": "x", "B": "y"}, "gold": "yes"}) + "\n"
                           for i in range(4)))
    recipe = work / "recipes" / "mixed.yaml"
    recipe.parent.mkdir(exist_ok=True)
    recipe.write_text(f"""name: mixed
description: one good source, one that loses every row
license: mit
sources:
  - name: medqa
    format: medqa
    path: {data_dir / 'medqa' / 'train_subset1030.json'}
  - name: bad
    format: generic
    path: {src}
    columns: {{question: q, options: opts, answer: gold, answer_format: label}}
steps:
  - validate: {{}}
""")
    result = run_build(str(recipe), limit=5)
    assert result.manifest["rows_out"] == 5
    assert pl.read_parquet(result.path / "rejects" / "source-bad.parquet").height == 4
    assert f"source 'bad' ({src}" in caplog.text and "all 4 rows rejected" in caplog.text
