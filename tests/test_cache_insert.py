"""The call cache's writer inserts a commit's calls with multi-row INSERT statements (issue 17c): the stored
rows must be exactly those of one INSERT OR REPLACE per call, also across statement chunks and when a key
repeats within one commit (the later call wins)."""

from __future__ import annotations

import sqlite3

import orjson

from synth.cache import _INSERT, _ROW_PARAMS, ROWS_PER_INSERT, CallCache, _insert_rows, call_key


def _table(path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT key, model, template, request, response, created FROM calls ORDER BY key").fetchall()


def test_multi_row_insert_equals_row_by_row(tmp_path, medqa_rows):
    rows = []
    for rep in range(6):  # real questions as the stored requests; every key repeats, with a different answer
        for r in medqa_rows.to_dicts():
            key = call_key("m", {"seed": 1}, [{"role": "user", "content": r["question"]}], "t1")
            rows.append((key, "m", "t1", orjson.dumps({"q": r["question"]}),
                         orjson.dumps({"a": r["answer"], "rep": rep}), float(len(rows))))
    rows = rows[: 2 * ROWS_PER_INSERT + 7]  # three statements (360 rows before the cut), keys repeated across and within them
    paths = {}
    for name in ("multi", "single"):
        with CallCache(tmp_path / f"{name}.sqlite") as cache:
            paths[name] = cache.path
        conn = sqlite3.connect(paths[name], isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        if name == "multi":
            _insert_rows(conn, rows)
        else:
            for row in rows:
                conn.execute(_INSERT + _ROW_PARAMS, row)
        conn.execute("COMMIT")
        conn.close()
    got, want = _table(paths["multi"]), _table(paths["single"])
    assert len(rows) == 2 * ROWS_PER_INSERT + 7 and got == want and len(want) == len({r[0] for r in rows}) == medqa_rows.height
    last = {r[0]: r for r in rows}  # the later duplicate wins
    assert {r[0]: r for r in got} == {k: (k, m, t, bytes(q), bytes(a), c) for k, (_, m, t, q, a, c) in last.items()}


def test_writer_commits_a_large_burst(tmp_path):
    n = 3 * ROWS_PER_INSERT + 1
    with CallCache(tmp_path / "c.sqlite") as cache:
        futs = [cache.put(f"k{i}", model="m", template="t", request={"messages": [{"content": str(i)}]},
                          response={"i": i}) for i in range(n)]
        cache.flush()
        assert all(f.done() and f.exception() is None for f in futs)
        assert len(cache) == n and cache.get("k0") == {"i": 0} and cache.get(f"k{n - 1}") == {"i": n - 1}
