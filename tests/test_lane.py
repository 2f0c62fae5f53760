"""The verification helper process (synth/lane.py): the same verdicts as in-process, the same `cot` output,
in-process fallback when the helper dies or fails a batch, and no re-run of an unguarded caller script."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl

from synth.cot_verify import ROW_FIELDS, verify_batch
from synth.lane import Lane, LaneError, lane_for
from synth.testing import Reply, oracle
from tests.fixtures_teacher import make_ctx
from tests.test_cot import run

ROOT = Path(__file__).resolve().parents[1]


def _ready(lane: Lane, within: float = 20.0) -> Lane:
    deadline = time.monotonic() + within
    while not lane.ready:
        assert time.monotonic() < deadline, "the helper process did not answer"
        time.sleep(0.02)
    return lane


def _replies(row: dict) -> list[tuple[str, str]]:
    """Replies of every kind for one real row: kept, wrong answer, echo, no answer line, cut off."""
    gold = row["answer"]
    wrong = next(o["label"] for o in row["options"] if o["label"] != gold)
    good = oracle({"messages": [{"role": "user", "content": f"Correct option: {gold}"}]}).content
    return [(good, "stop"), (good.replace(f"Answer: {gold}", f"Answer: {wrong}"), "stop"),
            (f"{row['question']}\n\nAnswer: {gold}", "stop"), ("I am not sure.", "stop"), (good, "length")]


def _items(frame: pl.DataFrame) -> list[tuple]:
    return [(tuple(row[f] for f in ROW_FIELDS), text, finish, 15, 0.6)
            for row in frame.to_dicts() for text, finish in _replies(row)]


def test_helper_verdicts_equal_in_process_ones(medqa_rows: pl.DataFrame) -> None:
    items = _items(medqa_rows)
    lane = _ready(lane_for(verify_batch))

    async def through_lane() -> list:
        return await asyncio.gather(*(lane.submit(item) for item in items))

    got = asyncio.run(through_lane())
    assert got == verify_batch(items)
    assert {reason for _, reason, _ in got} == {None, "wrong_answer", "echo", "no_answer", "truncated"}


def test_loops_in_two_threads_share_the_lane_without_mixing_batches(medqa_rows: pl.DataFrame, monkeypatch) -> None:
    """`run_sync` runs a loop in a thread of its own when the caller already runs one: each batch holds the
    futures of one loop and is settled in that loop's thread (futures are not thread-safe)."""
    import threading

    import synth.lane

    foreign: list[int] = []
    real_settle = synth.lane._settle

    def settle(futures, results):
        here = asyncio.get_running_loop()
        foreign.extend(1 for f in futures if f.get_loop() is not here)
        real_settle(futures, results)

    monkeypatch.setattr(synth.lane, "_settle", settle)

    items = _items(medqa_rows)  # 300 items
    lane = _ready(lane_for(verify_batch))
    got: dict[int, list] = {}
    start = threading.Barrier(2)

    def in_thread(k: int) -> None:
        async def go() -> list:
            start.wait()
            futures = []
            for item in items:  # submit and yield, so both loops fill batches at the same time
                futures.append(lane.submit(item))
                await asyncio.sleep(0)
            return await asyncio.wait_for(asyncio.gather(*futures), 20)

        got[k] = asyncio.run(go())

    threads = [threading.Thread(target=in_thread, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert got[0] == got[1] == verify_batch(items)
    assert foreign == []


def test_cot_output_is_the_same_with_and_without_the_helper(tmp_path: Path, scripted_server, medqa_rows, monkeypatch):
    import synth.steps.cot as cot

    rows = {r["question"][:200]: r for r in medqa_rows.to_dicts()}

    def mixed(req: dict) -> Reply:  # one row in three gets a wrong answer, one in five an echo
        user = req["messages"][-1]["content"]
        row = next((r for q, r in rows.items() if q in user), None)
        seed = int(req.get("seed") or 0)
        if row is not None and seed % 3 == 0:
            return Reply(_replies(row)[1][0])
        if row is not None and seed % 5 == 0:
            return Reply(_replies(row)[2][0])
        return oracle(req)

    scripted_server.responder = mixed
    lane = _ready(lane_for(verify_batch))
    batches_before = lane.batches
    outs = {}
    for name, min_rows in (("helper", 0), ("here", 10**9)):
        monkeypatch.setattr(cot, "LANE_MIN_ROWS", min_rows)
        outs[name] = run("cot", medqa_rows, make_ctx(tmp_path / name, scripted_server.url))
    assert lane.batches > batches_before, "the helper decided nothing"
    for part in ("kept", "rejected"):
        assert getattr(outs["helper"], part).equals(getattr(outs["here"], part)), part
    assert outs["here"].rejected.height > 0 and set(outs["here"].rejected["reason"]) >= {"wrong_answer"}


def test_a_dead_helper_fails_its_batch_and_stays_off(medqa_rows: pl.DataFrame) -> None:
    items = _items(medqa_rows.head(4))
    lane = _ready(Lane(verify_batch))
    try:
        async def after_kill() -> list:
            futures = [lane.submit(item) for item in items]  # sent at the next turn of the loop
            lane._io.proc.kill()
            return await asyncio.gather(*futures, return_exceptions=True)

        got = asyncio.run(after_kill())
        assert all(isinstance(g, LaneError) for g in got), got
        assert not lane.ready

        async def later() -> BaseException | None:
            try:
                await lane.submit(items[0])
            except LaneError as err:
                return err
            return None

        assert isinstance(asyncio.run(later()), LaneError)  # fails at once, no hang
    finally:
        lane.close()


def test_a_batch_the_helper_cannot_do_fails_as_lane_error(medqa_rows: pl.DataFrame) -> None:
    lane = _ready(Lane(verify_batch))
    try:
        async def bad() -> BaseException | None:
            try:
                await lane.submit(("not", "a", "row"))  # verify_batch raises on it in the helper
            except LaneError as err:
                return err
            return None

        err = asyncio.run(bad())
        assert isinstance(err, LaneError) and "ValueError" in str(err)
        assert not lane.ready
    finally:
        lane.close()


def test_an_unguarded_caller_script_is_not_run_again(tmp_path: Path, medqa_rows: pl.DataFrame) -> None:
    """multiprocessing's spawn/forkserver children re-run the parent's `__main__`; the helper must not."""
    marker = tmp_path / "runs.txt"
    item = _items(medqa_rows.head(1))[0]
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f"""
        import asyncio, time
        from synth.cot_verify import verify_batch
        from synth.lane import lane_for
        with open({str(marker)!r}, "a") as f:
            f.write("run\\n")
        lane = lane_for(verify_batch)
        while not lane.ready:
            time.sleep(0.02)
        async def one():
            return await lane.submit({item!r})
        print(asyncio.run(one())[1])
    """))
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"  # the oracle reply is kept
    assert marker.read_text() == "run\n"


def test_small_frames_and_few_requests_in_flight_start_no_helper(tmp_path: Path, scripted_server, medqa_rows,
                                                                  monkeypatch) -> None:
    """The helper is for frames of at least LANE_MIN_ROWS rows sent at least LANE_MIN_CONCURRENCY at a time."""
    import synth.steps.cot as cot

    started: list = []
    monkeypatch.setattr(cot, "lane_for", lambda fn: started.append(fn))
    run("cot", medqa_rows, make_ctx(tmp_path / "small", scripted_server.url))  # 60 rows < LANE_MIN_ROWS
    assert started == []
    monkeypatch.setattr(cot, "LANE_MIN_ROWS", 60)
    run("cot", medqa_rows, make_ctx(tmp_path / "few", scripted_server.url), teacher={"max_concurrency": 64})
    assert started == []  # 64 in flight < LANE_MIN_CONCURRENCY
    run("cot", medqa_rows, make_ctx(tmp_path / "large", scripted_server.url), teacher={"max_concurrency": 256})
    assert started == [verify_batch]
