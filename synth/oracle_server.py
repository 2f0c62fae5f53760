"""The benchmarks' zero-latency oracle server: `python -m synth.oracle_server --port 0` prints `PORT <n>` and serves
`synth.testing.oracle` replies to POST /v1/chat/completions until killed.

The same replies, bodies and status codes as `synth.testing.ScriptedServer` with its oracle (tests/test_oracle_server.py),
without what only the tests need (fault injection, the request log, a thread of its own): HTTP/1.1 keep-alive over an
asyncio `Protocol` on uvloop, one parse and one write a request. It shares the benchmark machine's cores with the
client it measures, and every microsecond it spends is taken from the client under test (a vLLM fleet runs on
other machines): on benchmarks/teacher_client.py (2,000 MedQA CoT calls at 512 in flight, 2 cores) this server
takes 25-35 us of CPU a request, the scripted one 50-60.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
from typing import Any

import orjson

from synth.testing import Reply, completion_body, http_response, oracle, parse_head

_NOT_FOUND = b'{"error":{"message":"not found"}}'
_BAD_JSON = b'{"error":{"message":"invalid JSON"}}'


class OracleProtocol(asyncio.Protocol):
    """One connection: requests are answered in the order they arrive, as soon as they are complete."""

    counter = itertools.count(1)

    def __init__(self) -> None:
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while (end := buf.find(b"\r\n\r\n")) >= 0:
            method, path, _, length = parse_head(bytes(buf[:end]))
            if len(buf) < end + 4 + length:
                return  # the body is still coming
            body = bytes(buf[end + 4 : end + 4 + length])
            del buf[: end + 4 + length]
            assert self._transport is not None
            self._transport.write(self.answer(method, path, body))

    def answer(self, method: str, path: str, raw: bytes) -> bytes:
        if method == "GET":  # no /models list: the client's preflight then lets the calls decide
            return http_response(404, _NOT_FOUND) if path.endswith("/models") else http_response(200, b'{"status":"ok"}')
        try:
            request: dict[str, Any] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return http_response(400, _BAD_JSON)
        reply: Reply = oracle(request)
        return http_response(200, orjson.dumps(completion_body(request, reply, next(self.counter))))


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(OracleProtocol, host, port, backlog=4096)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description="zero-latency oracle OpenAI-compatible server for benchmarks")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    from synth.client import run_sync  # uvloop when installed

    run_sync(lambda: serve(args.host, args.port))


if __name__ == "__main__":
    main()
