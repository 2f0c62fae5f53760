"""The call cache's group-commit writer: queued calls are visible at once and committed on close."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from synth.cache import CallCache, call_key, wait_for_checkpoints

BODY = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Answer: A"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2}}


def _put(cache: CallCache, i: int) -> str:
    msgs = [{"role": "user", "content": f"question {i}"}]
    key = call_key("m", {"seed": i}, msgs, "t1")
    cache.put(key, model="m", template="t1", request={"model": "m", "messages": msgs}, response={**BODY, "i": i})
    return key


def test_queued_calls_are_visible_before_commit_and_persist_after_close(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    cache = CallCache(db)
    keys = [_put(cache, i) for i in range(500)]
    assert all(cache.get(k)["i"] == i for i, k in enumerate(keys))  # queued or committed: same answer
    assert cache.contains(keys) == set(keys)
    cache.close()
    with CallCache(db) as again:
        assert len(again) == 500
        assert again.get(keys[123])["i"] == 123


def test_flush_commits_everything_for_a_second_reader(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    with CallCache(db) as writer, CallCache(db) as reader:
        keys = [_put(writer, i) for i in range(200)]
        writer.flush()
        assert reader.contains(keys) == set(keys)  # another connection sees every committed call


def test_a_process_that_exits_normally_loses_no_queued_call(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    code = ("import sys; from synth.cache import CallCache; sys.path.insert(0, 'tests');"
            "from test_cache_writer import _put; c = CallCache(sys.argv[1]); [_put(c, i) for i in range(300)]; c.close()")
    subprocess.run([sys.executable, "-c", code, str(db)], check=True, cwd=Path(__file__).resolve().parents[1])
    with CallCache(db) as cache:
        assert len(cache) == 300


def test_put_returns_a_future_resolved_once_the_call_is_committed(tmp_path: Path) -> None:
    """The teacher client awaits this future before it uses an answer: a killed build can lose only calls
    that were in flight or waiting for their commit, never one whose answer was already used."""
    db = tmp_path / "c.sqlite"
    with CallCache(db) as cache:
        msgs = [{"role": "user", "content": "q"}]
        key = call_key("m", {}, msgs, "t1")
        done = cache.put(key, model="m", template="t1", request={"model": "m", "messages": msgs}, response=BODY)
        done.result(timeout=10)
        with sqlite3.connect(db) as conn:  # committed: another connection sees it now, before any flush/close
            assert conn.execute("SELECT COUNT(*) FROM calls WHERE key = ?", (key,)).fetchone()[0] == 1


def test_the_wal_is_checkpointed_after_close_and_before_exit(tmp_path: Path) -> None:
    """`close` returns once everything is committed and leaves the WAL checkpoint to the writer thread; the
    checkpoint still ends before the process does (a killed daemon thread would leave the WAL file behind)."""
    db = tmp_path / "c.sqlite"
    cache = CallCache(db)
    keys = [_put(cache, i) for i in range(300)]
    cache.close()
    wait_for_checkpoints()
    assert not Path(f"{db}-wal").exists() and not cache._writer.is_alive()
    with CallCache(db) as again:
        assert again.contains(keys) == set(keys)
    code = ("import sys; from synth.cache import CallCache; sys.path.insert(0, 'tests');"
            "from test_cache_writer import _put; c = CallCache(sys.argv[1]); [_put(c, i) for i in range(3000)]; c.close()")
    other = tmp_path / "exit.sqlite"
    subprocess.run([sys.executable, "-c", code, str(other)], check=True, cwd=Path(__file__).resolve().parents[1])
    assert not Path(f"{other}-wal").exists()
    with CallCache(other) as cache:
        assert len(cache) == 3000


def test_a_call_that_expects_no_more_is_committed_without_lingering(tmp_path: Path, monkeypatch) -> None:
    """Under load the writer lingers up to LINGER_S for more calls; a call put with `more=False` (the client has
    nothing else in flight: the last reply of a step) ends the wait at once."""
    import threading

    import synth.cache

    monkeypatch.setattr(synth.cache, "LINGER_S", 2.0)
    gate = threading.Event()
    real = synth.cache._commit_rows

    def held(conn, rows):  # the first commit waits, so the calls put meanwhile make one batch of 10
        gate.wait(10)
        real(conn, rows)

    monkeypatch.setattr(synth.cache, "_commit_rows", held)
    with CallCache(tmp_path / "c.sqlite") as cache:
        first = cache.put("k0", model="m", template="t", request={}, response=BODY)
        batch = [cache.put(f"k{i}", model="m", template="t", request={}, response=BODY) for i in range(1, 11)]
        gate.set()
        first.result(10)
        for fut in batch:
            fut.result(10)  # a commit of 10 >= LINGER_AFTER: the next batch lingers
        waiting = cache.put("k11", model="m", template="t", request={}, response=BODY)
        time.sleep(0.3)
        assert not waiting.done(), "the writer did not linger"
        start = time.monotonic()
        last = cache.put("k12", model="m", template="t", request={}, response=BODY, more=False)
        last.result(10)
        assert waiting.done() and time.monotonic() - start < 1.0
