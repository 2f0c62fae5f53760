"""The teacher client's HTTP transport in a helper process: the event-loop thread of a build does no HTTP work.

With hundreds of calls in flight, a teacher step is bound by its event-loop thread and by the GIL that thread
shares with the others of its process. pyreqwest moves the HTTP work into a native thread, but that thread must
take the GIL to hand every response back (twice a call: headers, then body), and on a busy loop each hand-off
waits for the loop to let go of it. `HelperTransport` instead sends the requests of one turn of the loop to one
helper process (`python -m synth.transport_helper`) as one frame over its stdin, and gets the replies back
batched the same way over its stdout; the helper runs the profile's own transport (pyreqwest or aiohttp, with
the same timeouts, size cap and fault mapping: `synth.transport`) on its own event loop.

Issue 17 (benchmarks/teacher_client.py, 2,000 MedQA CoT calls at 512 in flight, 2 cores shared with the
server): an interleaved A/B in one process, medians of 15, took the `cot` step from 6,074 to 6,775 req/s
(0.70x -> 0.78x of the bare aiohttp + orjson loop) and its event-loop thread from 99 to 67 us a call; the
benchmark's own run: 7,216 against 6,307 req/s in-process (0.80x the floor), for the same CPU a call over all
processes (0.185 against 0.183 ms). At 8,000 calls a run: 8,776 against 8,152 req/s. The gain is less waiting,
not less work: pyreqwest's native thread needs the GIL for every hand-off, and in the helper it shares the GIL
with a loop that does nothing else.

Like the verification lane (`synth.lane`), the helper never holds a build up and never loses a call:
- one helper per process, started on first use and kept until exit; it hosts one inner transport per client;
- until the helper has answered once, calls go through an in-process transport (`transport_process: auto`),
  or wait for it (`always`, up to `START_TIMEOUT_S`, then in-process with a warning);
- a dead helper fails the calls it held as retryable connection errors (the client retries them, here),
  and later calls of the process stay in-process;
- a cancelled call is cancelled in the helper too (with aiohttp there its connection is freed at once;
  pyreqwest 0.15 keeps a cancelled request's connection until the request ends, in this process as there).
The headers (with the API key) go to the helper over its stdin, not on its command line.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import logging
import os
import pickle
import threading
from typing import TYPE_CHECKING, Any

from synth.errors import RetryableError, TeacherError
from synth.helper_process import HelperProcess, call_in, child_pipes, dumps, read_frame, write_frame
from synth.transport import Answer, Transport, inline_transport

if TYPE_CHECKING:
    from synth.config import TeacherProfile

log = logging.getLogger("medcurate.teacher")
#: `transport_process: auto` uses the helper for clients that expect at least this many calls: below it the
#: start-up (answers after about 0.23 s; 0.27-0.31 s of CPU and 47 MB, once per process) is not paid back
HELPER_MIN_CALLS = 256
#: how long `transport_process: always` waits for the helper at its first call before it goes in-process
START_TIMEOUT_S = 60.0
#: reply kinds in the helper's frames
_OK, _RETRY, _FINAL, _CRASH = range(4)


class _Helper:
    """The helper process of this process (`synth.helper_process`): routes its replies to the transports."""

    def __init__(self) -> None:
        self._routes: dict[int, HelperTransport] = {}
        self._lock = threading.Lock()  # `_routes` and `broken` change together
        self._answered = threading.Event()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []  # see `when_ready`
        self.broken: str | None = None
        self._io = HelperProcess("synth.transport_helper", name="HTTP helper process", on_message=self._receive,
                                 on_exit=self._break, on_unsendable=self._unsendable)
        self.pid = self._io.pid

    @property
    def ready(self) -> bool:
        return self._answered.is_set() and self.broken is None and not self._io.forked

    def when_ready(self) -> asyncio.Future[None]:
        """A future of the running loop, resolved once the helper has answered or is gone (see `ready`)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:
            if not self._answered.is_set():
                self._waiters.append((loop, fut))
                return fut
        fut.set_result(None)
        return fut

    def send(self, message: tuple[Any, ...]) -> bool:
        """Queue `message` for the helper (pickled on the writer thread); False when the helper is gone."""
        if self.broken is not None:
            return False
        self._io.send(message)
        return True

    def route(self, tid: int, transport: HelperTransport | None) -> None:
        with self._lock:
            if transport is None:
                self._routes.pop(tid, None)
            else:
                self._routes[tid] = transport

    def _receive(self, message: tuple[Any, ...]) -> None:
        """(Reader thread.) `("ready",)`, or `("replies", tid, items)` for one transport."""
        if message[0] == "ready":
            self._answer()
            return
        with self._lock:
            transport = self._routes.get(message[1])
        if transport is not None:
            transport.deliver(message[2])

    def _unsendable(self, message: tuple[Any, ...], err: Exception) -> None:
        """(Writer thread.) A message that does not pickle: the helper is given up, its calls go on in-process."""
        self._break(f"a {message[0]!r} message could not be sent to the HTTP helper process ({err!r:.200})")

    def _answer(self) -> None:
        with self._lock:
            self._answered.set()
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            call_in(loop, _resolve, fut)

    def _break(self, why: str) -> None:
        with self._lock:
            if self.broken is None:
                self.broken = why
            routes, self._routes = list(self._routes.values()), {}
        self._answer()  # wake the waiting `always` calls: they go in-process
        for transport in routes:
            transport.helper_gone(why)

    def close(self) -> None:
        """Stop the helper (see `HelperProcess.close`)."""
        self.broken = self.broken or "closed"
        self._io.close()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


_HELPER: _Helper | None = None
_HELPER_LOCK = threading.Lock()
_IDS = itertools.count(1)


def helper() -> _Helper:
    """This process's helper, started on first use (in the background) and kept until exit; a helper that
    died is not restarted (its calls and the later ones run in-process)."""
    global _HELPER
    with _HELPER_LOCK:
        if _HELPER is None or _HELPER.pid != os.getpid():
            _HELPER = _Helper()
        return _HELPER


@atexit.register
def _close_helper() -> None:
    if _HELPER is not None and _HELPER.pid == os.getpid():
        _HELPER.close()


class HelperTransport:
    """A `Transport` whose calls run in the helper process (see the module docstring); create it inside the
    event loop that will use it."""

    def __init__(self, profile: TeacherProfile, headers: dict[str, str], secrets: tuple[str, ...], *,
                 wait: bool = False):
        self.profile, self._headers, self._secrets = profile, headers, secrets
        self._helper = helper()
        # `always`: calls wait for the helper's first answer (all of them, up to START_TIMEOUT_S), then go there
        self._started = self._helper.when_ready() if wait else None
        self._loop = asyncio.get_running_loop()
        self._id = next(_IDS)
        self._rids = itertools.count()
        self._pending: dict[int, asyncio.Future[Answer]] = {}
        self._batch: list[tuple[int, str, bytes]] = []
        self._opened = False
        self._via_helper = False
        self._local: Transport | None = None
        self.calls_in_helper = 0  # calls sent to the helper (the rest ran in-process)

    async def post(self, url: str, data: bytes) -> Answer:
        if not self._via_helper and not await self._use_helper():
            if self._local is None:
                self._local = inline_transport(self.profile, self._headers, self._secrets)
            return await self._local.post(url, data)
        rid = next(self._rids)
        fut = self._pending[rid] = self._loop.create_future()
        if not self._batch:
            self._loop.call_soon(self._flush)
        self._batch.append((rid, url, data))
        self.calls_in_helper += 1
        try:
            return await fut
        except asyncio.CancelledError:
            if self._pending.pop(rid, None) is not None:
                self._helper.send(("cancel", self._id, rid))
            raise

    async def _use_helper(self) -> bool:
        """Whether calls go to the helper from now on (it has answered and is alive); opens this client's
        transport there on the first yes. `always`: the calls wait for the helper's first answer (once)."""
        h = self._helper
        if self._started is not None and not self._started.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._started), START_TIMEOUT_S)
            if not h.ready and not self._started.done():
                self._started.set_result(None)  # stop waiting: the later calls go in-process at once
                log.warning("HTTP helper process not available (%s): calls run in this process", h.broken or "no answer")
        if not h.ready:
            return False
        if not self._opened:
            self._opened = True
            h.route(self._id, self)
            h.send(("open", self._id, self.profile, self._headers, self._secrets))
        self._via_helper = True
        return True

    def _flush(self) -> None:
        batch = [item for item in self._batch if item[0] in self._pending]  # not those cancelled meanwhile
        self._batch = []
        if batch and not self._helper.send(("post", self._id, batch)):
            self._fail([rid for rid, *_ in batch], self._helper.broken or "the HTTP helper process is gone")

    def deliver(self, items: list[tuple[int, int, Any]]) -> None:
        """From the reader thread: settle these replies in this transport's loop."""
        call_in(self._loop, self._settle, items)

    def helper_gone(self, why: str) -> None:
        call_in(self._loop, self._fail, None, why)

    def _settle(self, items: list[tuple[int, int, Any]]) -> None:
        pending = self._pending
        for rid, kind, payload in items:
            fut = pending.pop(rid, None)
            if fut is None or fut.done():
                continue
            if kind == _OK:
                fut.set_result(payload)
            elif kind == _RETRY:
                fut.set_exception(RetryableError(*payload))
            elif kind == _FINAL:
                fut.set_exception(TeacherError(*payload))
            else:
                fut.set_exception(RuntimeError(f"the HTTP helper process failed on this call: {payload}"))

    def _fail(self, rids: list[int] | None, why: str) -> None:
        """Fail these calls (None: every pending one) as retryable: the client retries them, in-process."""
        self._via_helper = False  # the next call asks `_use_helper` again (a broken helper: no)
        for rid in list(self._pending) if rids is None else rids:
            fut = self._pending.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_exception(RetryableError("connection", f"{why}; the call is retried in this process"))

    async def close(self) -> None:
        if self._opened:
            self._helper.route(self._id, None)
            self._helper.send(("close", self._id))
        if self._local is not None:
            await self._local.close()


# -- the helper process ------------------------------------------------------------------------------------------

async def _serve(src: Any, out: Any) -> None:
    loop = asyncio.get_running_loop()
    transports: dict[int, Transport] = {}
    tasks: dict[tuple[int, int], asyncio.Task[None]] = {}
    replies: dict[int, list[tuple[int, int, Any]]] = {}
    done = loop.create_future()

    def flush() -> None:
        for tid, items in replies.items():
            write_frame(out, dumps(("replies", tid, items)))
        replies.clear()

    async def call(tid: int, rid: int, url: str, data: bytes) -> None:
        try:
            reply: tuple[int, int, Any] = (rid, _OK, await transports[tid].post(url, data))
        except RetryableError as err:
            reply = (rid, _RETRY, (err.reason, err.detail, err.wait))
        except TeacherError as err:
            reply = (rid, _FINAL, (err.detail, err.attempts, err.reason))
        except Exception as err:  # noqa: BLE001 - reported to the caller, which raises it there
            reply = (rid, _CRASH, repr(err)[:500])
        finally:
            tasks.pop((tid, rid), None)
        if not replies:
            loop.call_soon(flush)
        replies.setdefault(tid, []).append(reply)

    def handle(message: tuple[Any, ...]) -> None:
        kind, tid = message[0], message[1]
        if kind == "post":
            for rid, url, data in message[2]:
                tasks[(tid, rid)] = loop.create_task(call(tid, rid, url, data))
        elif kind == "open":
            transports[tid] = inline_transport(*message[2:])
        elif kind == "cancel":
            task = tasks.pop((tid, message[2]), None)
            if task is not None:
                task.cancel()
        elif kind == "close":
            transport = transports.pop(tid, None)
            if transport is not None:
                loop.create_task(transport.close())

    def read() -> None:
        while (payload := read_frame(src)) is not None:
            loop.call_soon_threadsafe(handle, pickle.loads(payload))
        loop.call_soon_threadsafe(done.set_result, None)

    threading.Thread(target=read, name="http-helper-stdin", daemon=True).start()
    write_frame(out, dumps(("ready",)))
    await done
    for task in list(tasks.values()):
        task.cancel()
    for transport in transports.values():
        await transport.close()


def main() -> None:
    """The helper: serves frames on stdin until it closes; replies on stdout (nothing else may print there)."""
    from synth.client import run_sync

    src, out = child_pipes()
    run_sync(lambda: _serve(src, out))


if __name__ == "__main__":
    main()
