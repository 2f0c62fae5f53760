"""A helper process for pure CPU work the teacher steps would otherwise do on the event-loop thread.

With hundreds of calls in flight, a teacher step's throughput is bounded by the one thread that runs the
event loop (it shares the GIL with the HTTP and cache-writer threads). Work that needs nothing but its inputs,
such as deciding a `cot` reply (`synth.cot_verify.verify_batch`), can run in another process meanwhile: a
`Lane` batches the items submitted in one turn of the loop into one call of a module-level function in one
helper process, and resolves each item's future with its result.

Issue 17 (benchmarks/teacher_client.py, 2,000 MedQA CoT calls at 512 in flight, 2 cores shared with the
server): a first version (a one-process pool) took the event-loop thread from 160 to 111 us a call and the
step from 4,191 to 5,037 req/s (+20%, 5 interleaved runs); this one gives 4,980-5,020 req/s against 4,481 in
process (medians of 5, separate runs), 0.116-0.120 ms a call on the event-loop thread against 0.146, and
cache replays at 15,646 rows/s against 14,286 (a burst of cached replies is cut into `BATCH_ITEMS` batches the
helper works through while the loop goes on; one batch of the whole burst made both sides wait on each other:
11,786). Batches of 16/32/64/128 items were within noise of each other on live calls (4,731-5,221 req/s).

The helper is `python -m synth.lane MODULE:FUNCTION`, started and spoken to through `synth.helper_process`
(length-prefixed pickle frames over its stdin/stdout; why not a multiprocessing pool: see there).

The lane never holds a step up: the helper starts in the background on first use (about 50 ms), and until it
has answered once `ready` is False and callers do the work themselves; if it dies or fails a batch, the
items of that batch fail with `LaneError` (callers redo them in-process: the functions are pure) and the lane
stays off. One lane per function and process (`lane_for`), kept for the life of the process: a build pays
the start-up once, not per step or per run; the helper exits when this process closes its stdin (at exit, or
when this process dies).
"""

from __future__ import annotations

import asyncio
import atexit
import importlib
import itertools
import os
import pickle
import sys
import threading
from collections.abc import Callable
from typing import Any

from synth.helper_process import HelperProcess, call_in, child_pipes, dumps, read_frame, write_frame

#: items per batch at most: a burst (512 cached replies decided in one turn of the loop) is cut into batches the
#: helper works through while the loop goes on, instead of one batch that both sides wait on in turn
BATCH_ITEMS = 64


class LaneError(RuntimeError):
    """The helper process failed a batch (it died, or the function raised): do the items in-process."""


def _ref(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}:{fn.__qualname__}"


class Lane:
    """Calls `fn(items) -> results` (a module-level function, one result per item) in one helper process."""

    def __init__(self, fn: Callable[[list[Any]], list[Any]]):
        self._ids = itertools.count()
        self._pending: dict[int, tuple[asyncio.AbstractEventLoop, list[asyncio.Future[Any]]]] = {}
        self._lock = threading.Lock()  # `_pending` and `_broken` change together
        self._ready = threading.Event()
        self._broken = False
        # the batch each event loop is filling (a process may run loops in several threads: run_sync)
        self._open: dict[asyncio.AbstractEventLoop, tuple[list[Any], list[asyncio.Future[Any]]]] = {}
        self.batches = 0  # batches sent to the helper
        # batches are pickled by its writer thread (off the event-loop thread: ~5 us an item of a MedQA row)
        self._io = HelperProcess("synth.lane", _ref(fn), name="helper process", on_message=self._receive,
                                 on_exit=self._break, on_unsendable=self._unsendable)
        self.pid = self._io.pid
        self._io.send((-1, []))  # handshake: sets `ready`

    @property
    def ready(self) -> bool:
        """True once the helper has answered and while it is alive."""
        return self._ready.is_set() and not self._broken and not self._io.forked

    def submit(self, item: Any) -> asyncio.Future[Any]:
        """`fn([item])[0]`, computed in the helper with the other items submitted in this turn of the loop."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        batch = self._open.get(loop)
        if batch is None:
            batch = self._open[loop] = ([], [])
            loop.call_soon(self._flush, loop)
        batch[0].append(item)
        batch[1].append(fut)
        if len(batch[0]) >= BATCH_ITEMS:  # the helper starts on this batch while the loop fills the next
            self._flush(loop)
        return fut

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        open_batch = self._open.pop(loop, None)
        if open_batch is None:  # flushed already, when it filled up
            return
        items, futures = open_batch
        batch = next(self._ids)
        with self._lock:
            sent = not self._broken
            if sent:
                self._pending[batch] = (loop, futures)
        if not sent:
            _fail(futures, "the helper process is gone")
            return
        self.batches += 1
        self._io.send((batch, items))

    def _receive(self, message: tuple[int, bool, Any]) -> None:
        """(Reader thread.) A batch's results, or the helper's error."""
        batch, ok, results = message
        if batch == -1:
            self._ready.set()
            return
        with self._lock:
            waiting = self._pending.pop(batch, None)
        if waiting is None:  # failed already (the lane broke while the helper worked on it)
            return
        loop, futures = waiting
        if not ok:
            self._break(f"the helper raised {results}")
            call_in(loop, _fail, futures, f"the helper raised {results}")
            return
        call_in(loop, _settle, futures, results)

    def _unsendable(self, message: tuple[int, list[Any]], err: Exception) -> None:
        """(Writer thread.) An item that does not pickle: that batch is done in-process."""
        with self._lock:
            waiting = self._pending.pop(message[0], None)
        if waiting is not None:
            call_in(waiting[0], _fail, waiting[1], f"the batch could not be sent ({err!r:.200})")

    def _break(self, why: str) -> None:
        with self._lock:
            self._broken = True
            pending, self._pending = self._pending, {}
        for loop, futures in pending.values():
            call_in(loop, _fail, futures, why)

    def close(self) -> None:
        """Stop the helper (see `HelperProcess.close`)."""
        self._broken = True
        self._io.close()


def _settle(futures: list[asyncio.Future[Any]], results: list[Any]) -> None:
    for fut, result in zip(futures, results, strict=True):
        if not fut.done():
            fut.set_result(result)


def _fail(futures: list[asyncio.Future[Any]], why: str) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_exception(LaneError(why))


_LANES: dict[str, Lane] = {}
_LOCK = threading.Lock()


def lane_for(fn: Callable[[list[Any]], list[Any]]) -> Lane:
    """This process's lane for `fn`, started on first use (in the background) and kept until exit; a lane
    whose helper died stays off (`ready` False) rather than being restarted step after step."""
    with _LOCK:
        lane = _LANES.get(_ref(fn))
        if lane is None or lane.pid != os.getpid():
            lane = _LANES[_ref(fn)] = Lane(fn)
        return lane


@atexit.register
def _close_lanes() -> None:
    for lane in _LANES.values():
        if lane.pid == os.getpid():
            lane.close()


def main(ref: str) -> None:
    """The helper: `fn(items)` for every frame read on stdin, `(batch, ok, results)` frames on stdout."""
    module, _, name = ref.partition(":")
    fn = getattr(importlib.import_module(module), name)
    src, out = child_pipes()
    while (payload := read_frame(src)) is not None:
        batch, items = pickle.loads(payload)
        try:
            reply = (batch, True, fn(items))
        except Exception as err:  # noqa: BLE001 - reported to the parent, which redoes the batch in-process
            reply = (batch, False, repr(err)[:500])
        write_frame(out, dumps(reply))


if __name__ == "__main__":
    main(sys.argv[1])
