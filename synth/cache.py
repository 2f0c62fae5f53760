"""Persistent teacher-call cache: sqlite in WAL mode, one committed row per completed call.

Key = sha256 over (model, generation params, rendered messages, prompt-template version), so a
re-run pays for no completed call twice and a changed prompt template invalidates only its own calls.
Several builds (or processes) may share one file: WAL lets readers run beside the single writer and
`busy_timeout` makes concurrent writers wait instead of failing.

Writes are group-committed by a writer thread with its own connection: `put` queues the call and returns
a future that the writer resolves once the call is committed; the teacher client awaits it before it uses
the answer, so no answer is used (and no later call of that row is made) before it is durable: a killed
build loses only the calls still in flight or waiting for their commit (at most `max_concurrency`), as with
one synchronous commit per call. The writer commits everything queued in one transaction as soon as it is
free, so under load one commit covers dozens of calls, and the event-loop thread pays about 10 us per call
instead of about 90 us for an autocommitted INSERT (benchmarks/teacher_client.py, 2 cores). A queued call is
visible to `get` at once; `close()` and `flush()` commit everything.

Under load (the last commit held at least `LINGER_AFTER` calls) the writer lingers up to `LINGER_S` (5 ms) for
more before it commits, and a commit of at most `ROWS_PER_INSERT` calls is one multi-row INSERT without
BEGIN/COMMIT (atomic by itself): issue 17, 2,000 MedQA CoT calls at 512 in flight, 14 -> 81 calls a commit
and the writer thread's CPU down by a third (0.435 -> 0.275 s over 7 runs; each call's answer waits at most
5 ms more, against seconds for a real generation); a single call at a time never lingers, nor does a call put
with `more=False` (the client has no other request in flight, so no reply is coming to join the commit: the last
replies of a step are committed at once instead of 5 ms later).

`close` returns once every call is committed; the WAL checkpoint that sqlite runs when the last connection
closes (5-13 ms for the ~4 MB of a 2,000-call step) is left to the writer thread, whose connection closes last,
and is joined at exit (`wait_for_checkpoints`); a process killed meanwhile leaves the WAL file for the next
connection to checkpoint (sqlite recovers it, and everything committed is in it). Issue 17: together with the teacher steps' faster start
(`synth.runner.START_WAVE`, `FrameRows`) the `cot` step on benchmarks/teacher_client.py went from 6,354 to 6,781
req/s (interleaved A/B, medians of 11, the checkpoint waited for between runs).
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import sqlite3
import threading
import time
import weakref
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import orjson

from synth.helper_process import call_in

CACHE_FILE = "teacher-calls.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    template TEXT NOT NULL,
    request BLOB NOT NULL,          -- audit form: params + final message (see audit_request)
    response BLOB NOT NULL,
    created REAL NOT NULL
)
"""


def audit_request(request: dict[str, Any]) -> dict[str, Any]:
    """What the cache keeps of a request for audit: every field, but of the messages only the last one
    (system prompt and few-shot turns are the same for every row of a template and would dominate the file)."""
    msgs = request.get("messages") or []
    return {**request, "messages": msgs[-1:], "n_messages": len(msgs)}


def call_key(model: str, params: dict[str, Any], messages: list[dict[str, str]], template: str) -> str:
    """Stable cache key of one call (params sorted, so dict order never matters): sha256 of
    `orjson.dumps({"model", "params", "messages", "template"}, OPT_SORT_KEYS)`.

    The system prompt and few-shot turns are the same for every row of a template (about 3 KB of the 3.7 KB
    of a MedQA CoT call), so the hash state after them is kept (`_prefix_hash`, keyed by those messages) and
    only the row's last message, model, params and template are serialised and hashed per call: the same
    bytes, so the same keys as hashing the whole payload (tests/test_teacher_batching.py), about 2x faster."""
    if len(messages) < 2:
        return _full_key(model, params, messages, template)
    try:
        h = _prefix_hash(tuple(tuple(m.items()) for m in messages[:-1]), messages[:-1]).copy()
    except TypeError:  # a message value that is not hashable (e.g. content parts): no prefix cache
        return _full_key(model, params, messages, template)
    h.update(b"," + orjson.dumps(messages[-1], option=orjson.OPT_SORT_KEYS) + b'],"model":' + orjson.dumps(model)
             + b',"params":' + orjson.dumps(params, option=orjson.OPT_SORT_KEYS) + b',"template":'
             + orjson.dumps(template) + b"}")
    return h.hexdigest()


def _full_key(model: str, params: dict[str, Any], messages: list[dict[str, str]], template: str) -> str:
    payload = orjson.dumps(
        {"model": model, "params": params, "messages": messages, "template": template},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(payload).hexdigest()


_PREFIXES: dict[tuple[Any, ...], Any] = {}


def _prefix_hash(ident: tuple[Any, ...], head: list[dict[str, str]]) -> Any:
    """sha256 state after `{"messages":[<head messages>` for the head whose items are `ident` (a few
    templates per build; at most 256 kept)."""
    h = _PREFIXES.get(ident)
    if h is None:
        h = hashlib.sha256(b'{"messages":[' + b",".join(orjson.dumps(m, option=orjson.OPT_SORT_KEYS) for m in head))
        if len(_PREFIXES) >= 256:
            _PREFIXES.clear()
        _PREFIXES[ident] = h
    return h


_INSERT = "INSERT OR REPLACE INTO calls (key, model, template, request, response, created) VALUES "
_ROW_PARAMS = "(?,?,?,?,?,?)"
#: rows per INSERT statement: 6 parameters a row within sqlite's oldest default limit of 999 parameters
ROWS_PER_INSERT = 150
#: group commit under load: once a commit held at least LINGER_AFTER calls, the writer waits up to LINGER_S
#: (or until LINGER_ROWS calls are queued) before it takes the next batch; one call at a time never waits
LINGER_AFTER, LINGER_S, LINGER_ROWS = 8, 0.005, 256


def _insert_rows(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert `rows` with one multi-row `INSERT OR REPLACE` per `ROWS_PER_INSERT` rows (a later row replaces an
    earlier one with the same key, as row by row). `executemany` steps the statement once per row, and the
    sqlite3 module releases and re-takes the GIL around every step: under load (commits of about 80-160 calls)
    each of those hand-offs can stall the event-loop thread (the GIL convoy effect). One step per 150 rows
    (A/B in one process, medians of 5, 2,000 MedQA calls at 512 in flight as in benchmarks/teacher_client.py):
    `cot` step 2,994 -> 3,258 req/s with the machine loaded, 4,031 -> 4,173 req/s on a quieter one (CPU per
    call the same within noise, 0.25 ms)."""
    for i in range(0, len(rows), ROWS_PER_INSERT):
        chunk = rows[i : i + ROWS_PER_INSERT]
        conn.execute(_INSERT + ",".join([_ROW_PARAMS] * len(chunk)), [v for row in chunk for v in row])


def _commit_rows(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Commit `rows` at once: a single multi-row INSERT (up to `ROWS_PER_INSERT` rows) is atomic by itself in
    autocommit mode, so it runs without BEGIN/COMMIT (one statement, one release of the GIL, instead of three);
    more rows take one explicit transaction."""
    if len(rows) <= ROWS_PER_INSERT:
        _insert_rows(conn, rows)
        return
    conn.execute("BEGIN IMMEDIATE")
    _insert_rows(conn, rows)
    conn.execute("COMMIT")


def _connect(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode with sqlite's default 4 KB pages. Issue 17d tried 16 KB pages for new files:
    faster on an empty file (writer thread 18.4 -> 12.9 us CPU a call in benchmarks/teacher_client.py, whose
    every run starts empty) but slower once the file holds a few hundred thousand calls, where each call's
    insert into the random-key index dirties a page of its own (200,000 calls cached, commits of 100:
    40-44 -> 48-52 us CPU and 63-105 -> 131-138 us wall a call); a 64 MB `cache_size` or a 1 GB `mmap_size`
    gave no steady CPU gain there either (about 40 us a call at 300,000 cached calls)."""
    conn = sqlite3.connect(path, timeout=60.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a committed call survives a killed process
    conn.execute("PRAGMA busy_timeout=60000")
    return conn


def _settle(futures: list[Future[None] | asyncio.Future[None]], err: BaseException | None) -> None:
    """From the writer thread: resolve a commit's futures; asyncio ones in their loop, one wake-up per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for fut in futures:
        if isinstance(fut, Future):
            if not fut.done():
                fut.set_exception(err) if err is not None else fut.set_result(None)
        else:
            by_loop.setdefault(fut.get_loop(), []).append(fut)
    for loop, futs in by_loop.items():
        call_in(loop, _settle_in_loop, futs, err)


def _settle_in_loop(futures: list[asyncio.Future[None]], err: BaseException | None) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_exception(err) if err is not None else fut.set_result(None)


#: writer threads of closed caches still checkpointing (`CallCache.close`), joined at exit
_closing_writers: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


@atexit.register
def wait_for_checkpoints() -> None:
    """Block until the closed caches' writer threads have checkpointed and closed their connections."""
    for thread in list(_closing_writers):
        thread.join()


class CallCache:
    """sqlite-backed map key -> response JSON (the parsed OpenAI chat-completions body)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = _connect(self.path)
        self._conn.execute(_SCHEMA)
        # group commit: calls waiting for the writer thread (visible to `get` through `_pending`)
        self._queue: deque[tuple[str, str, str, dict[str, Any], dict[str, Any], float, Future[None]]] = deque()
        self._pending: dict[str, dict[str, Any]] = {}
        self._wake = threading.Condition(threading.Lock())  # never re-entered: a plain lock is cheaper than an RLock
        self._closing = False
        self._hurry = False  # a queued call expects no more soon: commit without lingering (`put(more=False)`)
        self._error: BaseException | None = None
        self._writer: threading.Thread | None = None
        self._drained = threading.Event()  # the writer has committed everything and stopped taking calls
        self._released = threading.Event()  # `close` has closed this connection: the writer's is the last

    def get(self, key: str) -> dict[str, Any] | None:
        hit = self._pending.get(key)
        if hit is not None:
            return hit
        with self._lock:
            row = self._conn.execute("SELECT response FROM calls WHERE key = ?", (key,)).fetchone()
        return orjson.loads(row[0]) if row else None

    def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The cached responses of those `keys` that are cached: exactly the hits `get` gives key by key, in one
        `SELECT ... WHERE key IN (...)` per 500 keys (about 2 us a key instead of 12 us for a SELECT each;
        the teacher steps look up a whole frame's first calls before sending any)."""
        found = {k: self._pending[k] for k in keys if k in self._pending}
        rest = [k for k in keys if k not in found]
        with self._lock:
            for i in range(0, len(rest), 500):
                chunk = rest[i : i + 500]
                q = f"SELECT key, response FROM calls WHERE key IN ({','.join('?' * len(chunk))})"
                for k, response in self._conn.execute(q, chunk):
                    found[k] = orjson.loads(response)
        return found

    def put(self, key: str, *, model: str, template: str, request: dict[str, Any],
            response: dict[str, Any], response_raw: bytes | None = None,
            loop: asyncio.AbstractEventLoop | None = None, more: bool = True) -> Future[None] | asyncio.Future[None]:
        """Queue one completed call for the writer thread; the future resolves once it is committed.

        `request` is stored in its audit form (`audit_request`): params and the final message; `response_raw`,
        when given, is the response as received (valid JSON of `response`), stored as it is instead of being
        serialised again on the writer thread. With `loop`
        (called from that loop's thread), the future is an asyncio one of that loop, and the writer resolves
        all of a commit's futures of a loop with one `call_soon_threadsafe` (one loop wake-up per commit
        instead of one per call through `asyncio.wrap_future`). `more=False`: the caller expects no further
        call soon (it has no other request in flight), so the writer commits at once instead of lingering."""
        if self._error is not None:
            raise self._error
        done: Future[None] | asyncio.Future[None] = Future() if loop is None else loop.create_future()
        with self._wake:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="call-cache-writer", daemon=True)
                self._writer.start()
            self._pending[key] = response
            self._queue.append((key, model, template, request, response_raw or response, time.time(), done))
            if not more:
                self._hurry = True
            if len(self._queue) in (1, LINGER_ROWS) or not more:  # wake the writer when it may be idle or lingers
                self._wake.notify()
        return done

    def _linger(self) -> None:
        """(Holding `_wake`.) Wait up to `LINGER_S` for `LINGER_ROWS` queued calls, or until a call that
        expects no more (`put(more=False)`) or close."""
        deadline = time.monotonic() + LINGER_S
        while len(self._queue) < LINGER_ROWS and not self._closing and not self._hurry:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._wake.wait(left)

    def _write_loop(self) -> None:
        conn = _connect(self.path)
        batch: list[tuple[Any, ...]] = []
        try:
            while True:
                with self._wake:
                    while not self._queue and not self._closing:
                        self._wake.wait()
                    if not self._queue:
                        return
                    if len(batch) >= LINGER_AFTER:  # under load: let the next commit gather more calls
                        self._linger()
                    batch = list(self._queue)
                    self._queue.clear()
                    self._hurry = False
                rows = [(k, m, t, orjson.dumps(audit_request(req)), resp if isinstance(resp, bytes) else orjson.dumps(resp), ts)
                        for k, m, t, req, resp, ts, _ in batch]
                try:
                    _commit_rows(conn, rows)
                except BaseException as err:
                    _settle([done for *_, done in batch], err)
                    raise
                with self._wake:
                    for k, *_ in batch:
                        self._pending.pop(k, None)
                    self._wake.notify_all()
                _settle([done for *_, done in batch], None)
        except BaseException as err:  # noqa: BLE001 - surfaced by the next put / flush / close
            self._error = err
            with self._wake:
                _settle([done for *_, done in self._queue], err)
                self._wake.notify_all()
        finally:
            self._drained.set()
            # the last connection to close checkpoints the WAL into the database (about 5-10 ms for the ~4 MB a
            # step of 2,000 MedQA calls writes): `close` closes the other one first and returns, and this thread
            # does it meanwhile (joined at exit: `wait_for_checkpoints`)
            self._released.wait()
            conn.close()

    def flush(self) -> None:
        """Block until every queued call is committed."""
        with self._wake:
            while self._queue or (self._pending and self._error is None):
                if self._writer is None or not self._writer.is_alive():
                    break
                self._wake.wait(0.1)
        if self._error is not None:
            raise self._error

    def contains(self, keys: list[str]) -> set[str]:
        """Which of `keys` are cached (for --dry-run estimates)."""
        found: set[str] = {k for k in keys if k in self._pending}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                q = f"SELECT key FROM calls WHERE key IN ({','.join('?' * len(chunk))})"
                found.update(r[0] for r in self._conn.execute(q, chunk))
        return found

    def __len__(self) -> int:
        self.flush()
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        """Commit every queued call, stop the writer and close the connection. Returns once everything is
        committed; the writer thread then checkpoints the WAL and closes its own connection (see `_write_loop`)."""
        with self._wake:
            self._closing = True
            self._wake.notify_all()
        if self._writer is not None:
            self._drained.wait()
        with self._lock:
            self._conn.close()
        self._released.set()
        if self._writer is not None:
            _closing_writers.add(self._writer)
        if self._error is not None:
            raise self._error

    def __enter__(self) -> CallCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
