"""The plumbing of the teacher steps' helper processes (the verification lane, `synth.lane`, and the HTTP helper,
`synth.transport_helper`): a child `python -m MODULE ...` spoken to with length-prefixed pickle frames over its
stdin and stdout.

Not a multiprocessing pool: spawn and forkserver children re-run the parent's `__main__`, which breaks (or
re-runs) user scripts without an `if __name__ == "__main__"` guard, and fork is unsafe in a process with native
thread pools (polars, the HTTP client). In the parent a writer thread pickles and sends the messages and a reader
thread unpickles the replies, so an event loop never blocks on the pipe; the child exits when its stdin closes
(at the parent's exit, or when the parent dies).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

_HEADER = struct.Struct("<I")


def write_frame(out: BinaryIO, payload: bytes) -> None:
    """One length-prefixed frame."""
    out.write(_HEADER.pack(len(payload)) + payload)
    out.flush()


def read_frame(src: BinaryIO) -> bytes | None:
    """The next frame, or None at the end of the stream (or a frame cut short by a dead writer)."""
    head = src.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(head)
    payload = src.read(size)
    return payload if len(payload) == size else None


def call_in(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    """From another thread: `fn(*args)` in `loop`'s thread, unless the loop is closed (then nobody waits for what
    `fn` would settle any more)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)


def dumps(message: Any) -> bytes:
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


class HelperProcess:
    """The parent's side of one helper: `send(message)` queues a message (pickled and written by the writer
    thread); `on_message(message)` runs on the reader thread for every message from the helper; `on_exit(why)`
    when it stops reading or exits; `on_unsendable(message, error)` for a message that does not pickle."""

    def __init__(self, module: str, *args: str, name: str, on_message: Callable[[Any], None],
                 on_exit: Callable[[str], None], on_unsendable: Callable[[Any, Exception], None]):
        self.pid = os.getpid()  # a forked child inherits this object but not its threads: not usable there
        self.proc = subprocess.Popen([sys.executable, "-m", module, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        self._name = name
        self._on_message, self._on_exit, self._on_unsendable = on_message, on_exit, on_unsendable
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()  # messages, then None to stop
        threading.Thread(target=self._send, name=f"{module}-writer", daemon=True).start()
        threading.Thread(target=self._receive, name=f"{module}-reader", daemon=True).start()

    @property
    def forked(self) -> bool:
        """True in a forked child of the process that started the helper."""
        return os.getpid() != self.pid

    def send(self, message: Any) -> None:
        """Queue `message` (not None) for the helper."""
        self._outbox.put(message)

    def _send(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            while (message := self._outbox.get()) is not None:
                try:
                    payload = dumps(message)
                except Exception as err:  # noqa: BLE001 - the owner decides (e.g. that batch is done in-process)
                    self._on_unsendable(message, err)
                    continue
                write_frame(stdin, payload)
        except OSError:
            self._on_exit(f"the {self._name} stopped reading")
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    def _receive(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        while (payload := read_frame(stdout)) is not None:
            self._on_message(pickle.loads(payload))
        self._on_exit(f"the {self._name} exited")

    def close(self) -> None:
        """Stop the helper: it exits when its stdin closes (killed after 5 s if it does not)."""
        self._outbox.put(None)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def child_pipes() -> tuple[BinaryIO, BinaryIO]:
    """In the helper: its frame streams (stdin, stdout); `print` goes to stderr from then on, so nothing the
    helper's code prints can land in the frames."""
    src = os.fdopen(os.dup(0), "rb")
    out = os.fdopen(os.dup(1), "wb")
    sys.stdout = sys.stderr
    return src, out
