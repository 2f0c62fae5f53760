"""End to end: `curate build medqa-cot` against a real `transformers serve` (tiny random Llama) and
against the scripted server with a kill in the middle. Marked slow (they still run in CI)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import polars as pl
import pytest

from curate.resources import recipes_dir
from curate.steps import get_step
from synth.cache import audit_request
from synth.steps.cot import COT_REASONS
from synth.testing import Reply, ScriptedServer, oracle
from tests.fixtures_teacher import make_ctx

pytestmark = pytest.mark.slow


def shipped_recipe(**replace: str) -> str:
    text = (recipes_dir() / "medqa-cot.yaml").read_text()
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def curate_build(cwd: Path, *args: str, background: bool = False):
    env = {**os.environ, "MEDCURATE_BUILDS": str(cwd / "builds"), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "curate.cli", "build", "medqa-cot", "--quiet", *args]
    if background:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=150)


def manifest_of(cwd: Path) -> tuple[dict, Path]:
    base = cwd / "builds" / "medqa-cot"
    build = base / (base / "LATEST").read_text().strip()
    return json.loads((build / "manifest.json").read_text()), build


def canon(body: dict) -> bytes:
    """A request as the server saw it, in the cache's audit form (params + final message)."""
    return orjson.dumps(audit_request(body) if "n_messages" not in body else body, option=orjson.OPT_SORT_KEYS)


# -- real server: protocol, concurrency, caching, rejection accounting ----------------------------------------

def test_cot_step_against_transformers_serve(tiny_serve, tmp_path, medqa_rows):
    frame = medqa_rows.head(8)
    ctx = make_ctx(tmp_path, tiny_serve["url"], tiny_serve["model"])
    step = get_step("cot")({"max_attempts": 2, "max_tokens": 16, "log_every_s": 60,
                            "teacher": {"profile": "vllm-local", "max_concurrency": 4, "timeout_s": 60}})
    res = step.apply(frame, ctx)
    assert res.kept.height + res.rejected.height == 8
    assert set(res.rejected["reason"]) <= set(COT_REASONS)
    assert "teacher_error" not in set(res.rejected["reason"]), res.rejected["detail"].to_list()
    client = res.stats["client"]
    assert client["failures"] == 0 and client["retries"] == 0, client["errors"]
    assert client["requests"] == int(res.scores["cot_attempts"].sum()) and client["completion_tokens"] > 0
    again = step.apply(frame, ctx)
    assert again.stats["client"]["requests"] == 0 and again.stats["client"]["cache_hits"] == client["requests"]
    assert again.kept.equals(res.kept) and again.rejected.equals(res.rejected)
    judge = get_step("judge")({"max_tokens": 8, "log_every_s": 60,
                               "teacher": {"profile": "vllm-local", "max_concurrency": 4, "timeout_s": 60}})
    scored = judge.apply(frame.head(4), ctx)
    assert scored.kept.height + scored.rejected.height == 4 and set(scored.rejected["reason"]) <= {"no_score"}
    assert scored.stats["client"]["failures"] == 0 and scored.scores.height == 4


def test_curate_build_medqa_cot_against_transformers_serve(tiny_serve, tmp_path, data_dir):
    """The acceptance command (with short generations so the tiny CPU model stays fast)."""
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "medqa-cot.yaml").write_text(
        shipped_recipe(**{"max_tokens: 1024": "max_tokens: 16", "max_tokens: 256": "max_tokens: 8",
                          "max_attempts: 3": "max_attempts: 1",
                          "decontaminate_rephrase: {}": "decontaminate_rephrase: {max_tokens: 8, max_attempts: 1}"}))
    src = data_dir / "medqa" / "train_subset1030.json"
    r = curate_build(tmp_path, "--source", f"medqa={src}", "--limit", "20",
                     "--teacher-url", tiny_serve["url"], "--teacher-model", tiny_serve["model"],
                     "--allow-empty")  # a random-weight model may pass no CoT: an empty build is expected
    assert r.returncode == 0, r.stdout + r.stderr
    m, build = manifest_of(tmp_path)
    assert m["rows_in"] == 20 and m["rows_out"] + m["rows_rejected"] == 20
    cot = next(s for s in m["steps"] if s["name"] == "cot")
    assert cot["rows_in"] == cot["rows_kept"] + cot["rows_rejected"]
    assert set(cot["reasons"]) <= set(COT_REASONS) and "teacher_error" not in cot["reasons"]
    assert m["teacher"]["model"] == tiny_serve["model"] and m["teacher"]["params"]["max_tokens"] == 16
    scores = pl.read_parquet(build / "scores" / "cot.parquet")
    assert scores.height == cot["rows_in"] and scores["cot_attempts"].min() >= 1
    assert (tmp_path / "builds" / "medqa-cot" / ".work" / "teacher-calls.sqlite").is_file()


# -- kill and resume ------------------------------------------------------------------------------------------

def slow_teacher(req: dict) -> Reply:
    """The oracle, 30 ms per call, wrong on the first try for a third of the seeds (forces regeneration)."""
    reply = oracle(req)
    if "Correct option:" in str(req["messages"][-1]["content"]) and req["seed"] % 3 == 0:
        reply = Reply(reply.content.rsplit("Answer:", 1)[0] + "Answer: Z")
    reply.delay = 0.03
    return reply


def test_killed_build_resumes_without_paying_twice(tmp_path, data_dir):
    src = data_dir / "medqa" / "train_subset1030.json"
    recipe = shipped_recipe(**{"teacher: vllm-local": "teacher: {profile: vllm-local, max_concurrency: 4}"})
    runs = {}
    with ScriptedServer(slow_teacher) as srv:
        args = ("--source", f"medqa={src}", "--limit", "60", "--teacher-url", srv.url, "--teacher-model", "t")
        for name in ("killed", "clean"):
            (tmp_path / name / "recipes").mkdir(parents=True)
            (tmp_path / name / "recipes" / "medqa-cot.yaml").write_text(recipe)

        # 1. start, SIGKILL once 25 calls have completed
        proc = curate_build(tmp_path / "killed", *args, background=True)
        deadline = time.monotonic() + 60
        while len(srv.completed_bodies()) < 25:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "build made no progress"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        run1 = [canon(b) for b in srv.completed_bodies()]
        db = tmp_path / "killed" / "builds" / "medqa-cot" / ".work" / "teacher-calls.sqlite"
        with sqlite3.connect(db) as conn:
            committed = {canon(orjson.loads(r[0])) for r in conn.execute("SELECT request FROM calls")}
        assert not (tmp_path / "killed" / "builds" / "medqa-cot" / "LATEST").exists()
        # the server counts a call done when it has sent the reply; the client commits it a moment later,
        # so up to max_concurrency (4) of the 25 may be lost: >= 21 committed proves the re-run reuses them
        assert committed <= set(run1) and len(set(run1) - committed) <= 4, "at most the in-flight calls are lost"
        assert 21 <= len(committed) < 150

        # 2. re-run: no committed call is sent again
        srv.reset()
        r = curate_build(tmp_path / "killed", *args)
        assert r.returncode == 0, r.stdout + r.stderr
        run2 = [canon(b) for b in srv.completed_bodies()]
        assert not committed & set(run2), "a call completed before the kill was paid again"
        assert len(run2) == len(set(run2))

        # 3. an uninterrupted build makes the same calls and writes the same bytes
        srv.reset()
        r = curate_build(tmp_path / "clean", *args)
        assert r.returncode == 0, r.stdout + r.stderr
        clean = {canon(b) for b in srv.completed_bodies()}
        assert clean == committed | set(run2)
        for name in ("killed", "clean"):
            runs[name] = manifest_of(tmp_path / name)[0]
    assert runs["killed"]["output"]["sha256"] == runs["clean"]["output"]["sha256"]
    cot = next(s for s in runs["clean"]["steps"] if s["name"] == "cot")
    assert cot["stats"]["kept_by_attempt"].get("2", 0) > 0, "the scripted wrong answers forced regenerations"
    assert runs["clean"]["rows_out"] + runs["clean"]["rows_rejected"] == 60
