"""A scripted OpenAI-compatible chat-completions server for tests and benchmarks (loopback only).

Plain asyncio HTTP/1.1 with keep-alive, so faults can be injected at the byte level: 503s, 429s with
Retry-After, hangs past the client's timeout, bodies cut off mid-stream, invalid JSON and dropped
connections. Replies come from a `responder(request_json) -> Reply | str`; every request is logged.

    with ScriptedServer(responder) as srv:     # srv.url == "http://127.0.0.1:PORT/v1"
        srv.inject("503", "429", "drop")       # the next three requests fail that way, in order
        ...
        srv.log                                # [{"path", "body", "fault", "status", "completed"}]

`python -m synth.testing --port 0` runs this server with the oracle in its own process (`benchmarks/teacher_client.py
--server scripted`; the benchmarks' default is the leaner `synth.oracle_server`, the same replies).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

FAULTS = ("503", "500", "429", "hang", "cut", "badjson", "drop", "400")


@dataclass
class Reply:
    """One scripted answer. `content` may be a list for several choices (vLLM `n`)."""

    content: str | list[str] = ""
    finish_reason: str = "stop"
    status: int = 200
    fault: str | None = None
    retry_after: str | None = "0"
    delay: float = 0.0  # seconds before answering (simulated generation time)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    error_body: str | None = None  # body of a non-200 reply (default: a short scripted error)
    logprobs: Any = None  # the choice's `logprobs` object (OpenAI layout), when set


Responder = Callable[[dict[str, Any]], "Reply | str"]

_GOLD = re.compile(r"^(?:Correct option|Correct conclusion|Reference answer): (.+)$", re.MULTILINE)
_RESPONSE = re.compile(r"^RESPONSE:\n", re.MULTILINE)


def last_user(request: dict[str, Any]) -> str:
    for msg in reversed(request.get("messages") or []):
        if msg.get("role") == "user":
            return str(msg.get("content") or "")
    return ""


def oracle(request: dict[str, Any]) -> Reply:
    """A teacher that always 'knows': CoT prompts get an explanation ending with the gold answer; judge
    prompts get a score that depends on the request seed (deterministic); rephrase-judge prompts get
    `Verdict: different`."""
    user = last_user(request)
    if "BENCHMARK item:" in user:  # the rephrase-contamination judge: the oracle's data is clean
        return Reply("The two items ask different questions.\nVerdict: different")
    if _RESPONSE.search(user):
        score = 3 + (int(request.get("seed") or 0) % 8)
        return Reply(f"The response is mostly correct and safe.\nScore: {score}")
    m = _GOLD.search(user)
    gold = m.group(1).strip() if m else "A"
    return Reply(
        "The question asks which choice fits the findings described in this vignette.\n\n"
        "Weighing the presentation against each alternative, the pattern of symptoms, the timing and the "
        "laboratory values are explained by one mechanism, while the other choices each leave key findings "
        f"unexplained or contradict them.\n\nAnswer: {gold}"
    )


def parse_head(head: bytes) -> tuple[str, str, dict[str, str], int]:
    """A request head's method, path, headers (names lower-cased) and Content-Length (0 without one)."""
    lines = head.decode("latin-1").split("\r\n")
    method, path = (lines[0].split(" ") + ["", ""])[:2]
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return method, path, headers, int(headers.get("content-length") or 0)


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error",
            503: "Service Unavailable"}


def http_response(status: int, body: bytes, headers: dict[str, str] | None = None, length: int | None = None) -> bytes:
    """A JSON response: status line, headers (Content-Length: `length`, default the body's) and `body`."""
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\n")
    for name, value in (headers or {}).items():
        head += f"{name}: {value}\r\n"
    return head.encode() + b"\r\n" + body


def completion_body(request: dict[str, Any], reply: Reply, count: int) -> dict[str, Any]:
    """The chat-completions body of `reply` to `request`, the `count`-th request of the server (its id)."""
    contents = reply.content if isinstance(reply.content, list) else [reply.content]
    prompt_chars = sum(len(str(m.get("content") or "")) for m in request.get("messages") or [])
    pt = reply.prompt_tokens if reply.prompt_tokens is not None else prompt_chars // 4
    ct = reply.completion_tokens if reply.completion_tokens is not None else sum(len(c) for c in contents) // 4
    return {
        "id": f"chatcmpl-{count}", "object": "chat.completion", "created": 0,
        "model": request.get("model", "scripted"),
        "choices": [{"index": i, "message": {"role": "assistant", "content": c}, "finish_reason": reply.finish_reason,
                     **({"logprobs": reply.logprobs} if reply.logprobs is not None else {})}
                    for i, c in enumerate(contents)],
        "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
        **reply.extra,
    }


class ScriptedServer:
    """The server in a background thread with its own event loop."""

    def __init__(self, responder: Responder | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 hang_s: float = 30.0, keep_log: bool = True, models: list[str] | None = None):
        self.responder: Responder = responder or oracle
        self.host, self.port = host, port
        self.hang_s = hang_s
        self.keep_log = keep_log
        self.models = models  # ids listed by GET /models; None: answer 404 (a server that lists nothing)
        self.log: list[dict[str, Any]] = []
        self.count = 0
        self._faults: deque[str] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> ScriptedServer:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, self.host, self.port, backlog=4096)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True, name="scripted-openai-server")
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for w in list(self._writers):
                w.close()
            me = asyncio.current_task()
            others = [t for t in asyncio.all_tasks() if t is not me]
            for t in others:
                t.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            self._loop.stop()  # type: ignore[union-attr]

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        if self._thread is not None:
            self._thread.join(5)
        self._loop = None

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(self, *faults: str) -> None:
        """Make the next requests fail, one fault each, in order."""
        for f in faults:
            if f not in FAULTS:
                raise ValueError(f"unknown fault {f!r}; known: {FAULTS}")
        self._faults.extend(faults)

    def reset(self) -> None:
        self.log.clear()
        self._faults.clear()
        self.count = 0

    def completed_bodies(self) -> list[dict[str, Any]]:
        return [e["body"] for e in self.log if e["completed"]]

    # -- HTTP -----------------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
                    return
                method, path, headers, length = parse_head(head)
                raw = await reader.readexactly(length) if length else b""
                if not await self._respond(method, path, raw, writer, headers):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    @staticmethod
    def _send(writer: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, str] | None = None,
              length: int | None = None) -> None:
        writer.write(http_response(status, body, headers, length))

    async def _respond(self, method: str, path: str, raw: bytes, writer: asyncio.StreamWriter,
                       headers: dict[str, str]) -> bool:
        """Answer one request; False closes the connection."""
        if method == "GET":
            if path.endswith("/models"):
                if self.models is None:
                    self._send(writer, 404, b'{"error":{"message":"not found"}}')
                else:
                    data = [{"id": m, "object": "model"} for m in self.models]
                    self._send(writer, 200, orjson.dumps({"object": "list", "data": data}))
            else:
                self._send(writer, 200, b'{"status":"ok"}')
            await writer.drain()
            return True
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._send(writer, 400, b'{"error":{"message":"invalid JSON"}}')
            await writer.drain()
            return True
        self.count += 1
        entry: dict[str, Any] = {"path": path, "body": body, "fault": None, "status": 200, "completed": False,
                                 "t": time.monotonic(), "headers": headers}
        if self.keep_log:
            self.log.append(entry)
        fault = self._faults.popleft() if self._faults else None
        reply: Reply | None = None
        if fault is None:
            out = self.responder(body)
            reply = Reply(out) if isinstance(out, str) else out
            fault = reply.fault
            if reply.delay:
                await asyncio.sleep(reply.delay)
        entry["fault"] = fault
        if fault in ("503", "500", "400"):
            entry["status"] = int(fault)
            self._send(writer, int(fault), b'{"error":{"message":"scripted failure"}}')
        elif fault == "429":
            entry["status"] = 429
            ra = reply.retry_after if reply is not None else "0"
            self._send(writer, 429, b'{"error":{"message":"rate limited"}}', {"Retry-After": ra} if ra else None)
        elif fault == "hang":
            await asyncio.sleep(self.hang_s)
            return False
        elif fault == "drop":
            writer.transport.abort()
            return False
        else:
            assert reply is None or reply.status == 200 or fault is None
            if reply is not None and reply.status != 200:
                entry["status"] = reply.status
                self._send(writer, reply.status, (reply.error_body or '{"error":{"message":"scripted status"}}').encode())
                await writer.drain()
                return True
            data = orjson.dumps(completion_body(body, reply or Reply("Answer: A"), self.count))
            if fault == "cut":
                self._send(writer, 200, data[: len(data) // 2], length=len(data))
                await writer.drain()
                writer.transport.abort()
                return False
            if fault == "badjson":
                self._send(writer, 200, data[: len(data) // 2])
            else:
                entry["completed"] = True
                self._send(writer, 200, data)
        await writer.drain()
        return True

def main() -> None:
    ap = argparse.ArgumentParser(description="oracle OpenAI-compatible server (zero latency) for benchmarks")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    srv = ScriptedServer(host=args.host, port=args.port, keep_log=False).start()
    print(f"PORT {srv.port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    main()
