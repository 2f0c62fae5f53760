"""The teacher client's batched fast paths give the same answers as the per-row paths they replace (issue 17):
batch cache lookup vs per-key `get`, the word split vs its regex definition, the bounded echo check vs the
exact measures, asyncio commit notification, the collector settings restored after a run, and rows prepared (and
converted from the frame) chunk by chunk so the first requests leave early."""

from __future__ import annotations

import asyncio
import gc
import json
import sqlite3
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synth.cache import CallCache, call_key
from synth.client import run_sync
from synth.parse import copied_fraction, echo_measures, find_answer, novel_words, words, words_regex
from synth.prompts import COT_TEMPLATES, fields
from synth.testing import oracle
from tests.fixtures_teacher import make_ctx
from tests.test_cot import run

PARAMS = {"temperature": 0.7, "top_p": 0.95, "max_tokens": 1024}


def _sources(data_dir: Path) -> list[str]:
    """Question + options of every MedQA training row and question + contexts of PubMedQA rows (real text,
    about half with non-ASCII characters: degrees, micro signs, dashes, accents)."""
    medqa = json.loads((data_dir / "medqa" / "train_subset1030.json").read_text())
    pubmed = json.loads((data_dir / "pubmedqa" / "train.json").read_text())
    out = [" ".join([r["question"], *r["options"].values()]) for r in medqa]
    out += [" ".join([r["QUESTION"], *r["CONTEXTS"]]) for r in list(pubmed.values())[:300]]
    return out


def test_words_matches_its_regex_definition_on_real_text(data_dir: Path) -> None:
    texts = _sources(data_dir)
    non_ascii = [t for t in texts if not t.isascii()]
    assert len(non_ascii) > 300  # the non-ASCII path is exercised, not only the ASCII one
    extra = ["Straße ﬁne naïve İstanbul µg/dL 37.5°C – x²", "Ⅻ ½ ٣ 二 _under_score", "", "ÉCOLE école"]
    for t in texts + extra:
        assert words(t) == words_regex(t), t[:80]


def test_echo_measures_decide_like_the_exact_measures(data_dir: Path, medqa_rows: pl.DataFrame) -> None:
    """On real rows with a real explanation (oracle), with the question echoed back, and half-echoed replies."""
    rows = medqa_rows.to_dicts()
    checked = skipped = 0
    for row in rows:
        source = " ".join([row["question"], *(o["text"] for o in row["options"])])
        reply = oracle({"messages": COT_TEMPLATES["mcq"].render(fields(row))}).content
        explanation = reply[: find_answer(reply).start]
        half = row["question"][: len(row["question"]) // 2] + " " + explanation
        for body in (explanation, row["question"], half):
            bw, sw = words(body), words(source)
            for limit in (0.0, 0.3, 0.6, 1.0):
                new, copied = echo_measures(bw, sw, limit)
                exact = copied_fraction(bw, sw)
                assert new == novel_words(bw, set(sw))
                if copied is None:
                    assert exact <= limit
                    skipped += 1
                else:
                    assert copied == exact
                checked += 1
    assert skipped and skipped < checked  # both the bound and the exact path are exercised


def _rendered_keys(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    tmpl = COT_TEMPLATES["mcq"]
    out = []
    for i, row in enumerate(rows):
        msgs = tmpl.render(fields(row))
        out.append((call_key("m", {**PARAMS, "seed": i}, msgs, tmpl.version), msgs))
    return out


def test_get_many_returns_exactly_the_per_key_hits(tmp_path: Path, medqa_rows: pl.DataFrame) -> None:
    """Committed, still queued, and absent calls of real rendered MedQA prompts: one batch lookup (over
    more keys than one SELECT takes) finds exactly what `get` finds key by key."""
    rows = medqa_rows.to_dicts() * 20  # 1,200 keys: three SELECT chunks
    calls = _rendered_keys(rows)
    db = tmp_path / "c.sqlite"
    with CallCache(db) as cache:
        for i, (key, msgs) in enumerate(calls[:400]):
            cache.put(key, model="m", template="t", request={"messages": msgs}, response={"i": i})
        cache.flush()  # committed
        for i, (key, msgs) in enumerate(calls[400:700], 400):
            cache.put(key, model="m", template="t", request={"messages": msgs}, response={"i": i})  # maybe queued
        keys = [k for k, _ in calls]
        per_key = {k: hit for k in keys if (hit := cache.get(k)) is not None}
        assert cache.get_many(keys) == per_key
        assert len(per_key) == 700 and sorted(v["i"] for v in per_key.values()) == list(range(700))
    with CallCache(db) as again:  # a fresh reader: everything committed
        assert again.get_many(keys) == per_key


def test_asyncio_put_resolves_once_committed(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"

    async def main() -> list[bool]:
        cache = CallCache(db)
        loop = asyncio.get_running_loop()
        futs = [cache.put(f"k{i}", model="m", template="t", request={}, response={"i": i}, loop=loop)
                for i in range(300)]
        await asyncio.gather(*futs)
        # committed before the futures resolved: a separate connection sees every call
        seen = sqlite3.connect(db).execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        cache.close()
        return [seen == 300, all(isinstance(f, asyncio.Future) for f in futs)]

    assert run_sync(main) == [True, True]


def test_prefetched_run_pays_only_misses_and_a_cached_bad_body_is_a_miss(tmp_path, scripted_server, medqa_rows):
    frame = medqa_rows.head(12)
    ctx = make_ctx(tmp_path, scripted_server.url)
    first = run("cot", frame.head(8), ctx)
    assert len(scripted_server.log) == 8
    # spoil one cached answer (as an older version might have stored it): it must be asked again
    db = tmp_path / "teacher-calls.sqlite"
    with sqlite3.connect(db) as conn:
        key = conn.execute("SELECT key FROM calls ORDER BY created LIMIT 1").fetchone()[0]
        conn.execute("UPDATE calls SET response = ? WHERE key = ?", (b'{"choices":[{}]}', key))
    second = run("cot", frame, ctx)
    assert len(scripted_server.log) == 8 + 4 + 1
    assert second.stats["client"]["cache_hits"] == 7 and second.stats["client"]["requests"] == 5
    assert second.kept.height == 12
    assert second.kept.head(8)["cot"].to_list() == first.kept["cot"].to_list()


def test_rows_are_prepared_in_chunks_and_requests_leave_before_the_last_chunk(tmp_path, scripted_server, medqa_rows,
                                                                            monkeypatch):
    """`map_rows` prepares (renders, keys, looks up) rows chunk by chunk as the workers reach them: with fewer
    workers than rows, the first request leaves before the last chunk is prepared; every row is prepared once,
    and the output is the same as with one chunk of all rows (on a half-cached frame, so prefetched hits are
    served across chunks)."""
    import shutil
    import time

    import synth.runner
    from synth.steps.cot import Cot

    frame = medqa_rows.head(60)
    run("cot", frame.head(25), make_ctx(tmp_path / "warm", scripted_server.url))  # 25 of the 60 calls cached
    prepared: list[tuple[float, int]] = []
    real = Cot._prefetch

    def spy(self, client, rows, base_seed):
        prepared.append((time.monotonic(), len(rows)))
        return real(self, client, rows, base_seed)

    monkeypatch.setattr(Cot, "_prefetch", spy)
    outs = {}
    for chunk in (7, 1000):
        monkeypatch.setattr(synth.runner, "PREPARE_ROWS", chunk)
        work = tmp_path / f"chunk{chunk}"
        work.mkdir()
        shutil.copy(tmp_path / "warm" / "teacher-calls.sqlite", work / "teacher-calls.sqlite")
        prepared.clear()
        scripted_server.reset()
        outs[chunk] = run("cot", frame, make_ctx(work, scripted_server.url), teacher={"max_concurrency": 4})
        # chunks of at most PREPARE_ROWS, the first START_WAVE (32) rows small: 1000 -> 32 + 28
        assert [n for _, n in prepared] == ([7] * 8 + [4] if chunk == 7 else [32, 28])
        assert len(scripted_server.log) == 35 and outs[chunk].stats["client"]["cache_hits"] == 25
        if chunk == 7:  # rows 0-3 go to the 4 workers at once; the last chunk (rows 56-59) waits for its turn
            assert scripted_server.log[0]["t"] < prepared[-1][0], "no request left before the last chunk was prepared"
    assert outs[7].kept["cot"].to_list() == outs[1000].kept["cot"].to_list() and outs[7].kept.height == 60


def test_the_first_requests_leave_before_the_later_waves_are_prepared(tmp_path, scripted_server, medqa_rows,
                                                                     monkeypatch):
    """With as many workers as rows, the workers start in waves of START_WAVE rows (one wave per turn of the loop,
    after the server probe): the first wave's requests are sent before the later waves' rows are prepared.
    When every worker started at once, all 60 rows were prepared before the first request left."""
    import synth.runner
    from synth.steps.cot import Cot

    monkeypatch.setattr(synth.runner, "START_WAVE", 8)
    sent_before: list[tuple[int, int]] = []  # (rows in the chunk, requests sent when it was prepared)
    real = Cot._prefetch

    def spy(self, client, rows, base_seed):
        sent_before.append((len(rows), client.stats.requests))
        return real(self, client, rows, base_seed)

    monkeypatch.setattr(Cot, "_prefetch", spy)
    out = run("cot", medqa_rows, make_ctx(tmp_path, scripted_server.url), teacher={"max_concurrency": 64})
    assert out.kept.height == 60
    assert [n for n, _ in sent_before] == [8, 8, 16, 28]  # chunks grow from the wave size to PREPARE_ROWS
    assert sent_before[0][1] == 0 and sent_before[-1][1] >= 8, sent_before


def test_frame_rows_are_the_frames_dicts_converted_chunk_by_chunk(medqa_rows) -> None:
    from synth.runner import START_WAVE, FrameRows

    frame = medqa_rows.select("id", "task", "question", "context", "options", "answer")
    rows = FrameRows(frame)
    assert rows[0] == frame.row(0, named=True) and rows._chunks.keys() == {0}  # only the first chunk converted
    assert len(rows) == 60 and rows[-1] == rows[59] and rows[START_WAVE + 1]["id"] == frame["id"][START_WAVE + 1]
    assert rows[10:45] == frame.to_dicts()[10:45] and list(rows) == frame.to_dicts()
    assert rows[5] is rows[5]  # one dict a row: a step may annotate it (`_first`) and read it back
    with pytest.raises(IndexError):
        rows[60]


def test_client_gc_settings_are_restored(tmp_path: Path) -> None:
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()

    async def inside() -> tuple[tuple[int, ...], int]:
        return gc.get_threshold(), gc.get_freeze_count()

    during, frozen_during = run_sync(inside)
    assert during[0] >= 20_000 and frozen_during >= frozen
    assert gc.get_threshold() == before and gc.get_freeze_count() == frozen


def test_client_gc_leaves_a_callers_freeze_alone() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()

        async def noop() -> None:
            return None

        run_sync(noop)
        # not unfrozen (that would give 0) and nothing frozen on top; frozen objects that die meanwhile
        # (another test's thread letting go of them) may lower the count by a few
        assert 0.99 * frozen < gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()


def test_call_key_equals_the_hash_of_the_whole_payload(medqa_rows: pl.DataFrame, pubmedqa_rows: pl.DataFrame) -> None:
    """The prefix-cached key is byte-for-byte the documented one on real prompts of every CoT template, and for
    odd message lists (one message, extra keys, non-ASCII, a head shared by two templates' versions)."""
    import hashlib

    import orjson

    from synth.cache import call_key

    def reference(model, params, messages, template):
        payload = orjson.dumps({"model": model, "params": params, "messages": messages, "template": template},
                               option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(payload).hexdigest()

    cases = []
    for row in medqa_rows.to_dicts() + pubmedqa_rows.to_dicts():
        tmpl = COT_TEMPLATES[row["task"]]
        cases.append(("m", {**PARAMS, "seed": len(cases)}, tmpl.render(fields(row)), tmpl.version))
    cases += [
        ("m", {}, [{"role": "user", "content": "q"}], "t"),
        ("m", {"b": 1, "a": [2, {"z": 1, "y": 2}]}, [], "t"),
        ("m", {}, [{"role": "system", "content": "s", "name": "x"}, {"role": "user", "content": "é µg"}], "t"),
        ("m", {}, [{"role": "system", "content": "s"}, {"role": "user", "content": "q", "name": "n"}], "t"),
        ("modèle", {"seed": 1}, [{"content": "s", "role": "system"}, {"role": "user", "content": "q"}], "t2"),
        ("m", {}, [{"role": "user", "name": "x"}, {"role": "user", "content": "q"}], "t"),
        ("m", {}, [{"role": "user", "content": None}, {"role": "user", "content": "q"}], "t"),
        ("m", {}, [{"role": "user", "content": [{"type": "text", "text": "a"}]}, {"role": "user", "content": "q"}], "t"),
    ]
    for case in cases * 2:  # the second pass hits the cached prefixes
        assert call_key(*case) == reference(*case)


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
       | st.lists(st.sampled_from(["e\u0301\u0323", "ǅ", "ŉ", "ΣΑΣ ὈΔΥΣΣΕΎΣ", "Ꭰ", "ﬀ", "\u212a", "\u0f73",
                                   "İ", "ß", "µ", "°", "x²", "Ⅻ", "A", "b-", " "]), max_size=12).map("".join))
def test_words_matches_its_regex_definition_on_any_text(text: str) -> None:
    """The per-character casefold and the skipped combining-mark pass (issue 17c) on arbitrary text."""
    assert words(text) == words_regex(text)
