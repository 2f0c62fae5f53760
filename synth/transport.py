"""HTTP transports of the teacher client: POST one JSON body, get back (status, Retry-After, body bytes).

The client (`synth.client`) owns everything above the wire: the in-flight bound, endpoint choice, retries,
status codes, body validation and the call cache. A transport only moves bytes and turns wire faults into
two exceptions: `RetryableError` (connection refused or dropped, no answer within `timeout_s`, a body cut
off or stalled for `read_timeout_s`) and `TeacherError` (a body over `max_response_bytes`: never retried).

Two transports, chosen by the profile's `transport` (`auto`: pyreqwest when it imports, else aiohttp):
- `pyreqwest` (`ReqwestTransport`): Rust's reqwest/hyper behind an asyncio facade; connections, HTTP parsing
  and TLS run in its own native thread, outside the GIL. On benchmarks/teacher_client.py (2 cores, MedQA CoT
  calls to the zero-latency server in its own process, 512 in flight, medians of 5) a bare pyreqwest + orjson
  loop does 13,110 req/s with 36 us a request on the event-loop thread, a bare aiohttp + orjson loop 6,879
  req/s with 144 us. The `cot` step on it: 4,481 vs 3,888 req/s on aiohttp (+15%), 146 vs 244 us a call on
  the event-loop thread (an interleaved A/B in one process, 7 runs of 2,000 calls: 4,209 vs 3,953, +6%).
  The step gains less than its transport because on that machine it is then bound by the rest of each call
  (issue 17, per-thread CPU at 4,000 calls): the event-loop thread's own work (prompt, key, cache put,
  verification: ~95 us), the native thread (50-65 us, including its GIL hand-offs), the cache writer thread
  (39-51 us) and the server's ~60 us, on 2 cores. Verification then moved to a helper process (synth/lane.py),
  and for clients of many calls the transport itself (synth/transport_helper.py, `transport_process`).
- `aiohttp` (`AiohttpTransport`): pure-asyncio, for platforms without a pyreqwest wheel or users who need
  aiohttp's behaviour; the same faults, the same reasons (tests run the fault suite on both).

A cancelled call: aiohttp closes its connection; pyreqwest 0.15 lets the request run on (its connection and its
`max_connections` slot stay taken until the request ends or `timeout_s`), which matters only for a client
that cancels calls and goes on (tests/test_transport_helper.py).

Both read the body after the headers with an idle timeout (`read_timeout_s` between two reads; the wait
for the headers is bounded by `timeout_s` only, so long non-streamed generations are never cut) and stop
at `max_response_bytes`. Neither reads proxy settings from the environment (aiohttp's `trust_env=False`;
pyreqwest's `no_proxy()`): a teacher on a private network is called directly.
"""

from __future__ import annotations

import asyncio
import importlib.util
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp

from curate.redact import redact_text, short_reason
from synth.errors import RetryableError, TeacherError

if TYPE_CHECKING:
    from synth.config import TeacherProfile

#: (HTTP status, the Retry-After header or None, the body as received)
Answer = tuple[int, "str | None", bytes]


class Transport(Protocol):
    async def post(self, url: str, data: bytes) -> Answer: ...

    async def close(self) -> None: ...


def transport_name(profile: TeacherProfile) -> str:
    """The transport a profile gets: its own choice, or for `auto` pyreqwest when installed, else aiohttp."""
    if profile.transport != "auto":
        return profile.transport
    return "pyreqwest" if importlib.util.find_spec("pyreqwest") is not None else "aiohttp"


def open_transport(profile: TeacherProfile, headers: dict[str, str], secrets: tuple[str, ...],
                   expected_calls: int = 0) -> Transport:
    """The profile's transport, ready to post (call from inside the running event loop): in the HTTP helper
    process (`synth.transport_helper`) when `transport_process` asks for it (`auto`: for a client that expects
    at least `HELPER_MIN_CALLS` calls), else in this process."""
    from synth import transport_helper  # it builds on this module

    mode = profile.transport_process
    if mode == "always" or (mode == "auto" and expected_calls >= transport_helper.HELPER_MIN_CALLS):
        return transport_helper.HelperTransport(profile, headers, secrets, wait=mode == "always")
    return inline_transport(profile, headers, secrets)


def inline_transport(profile: TeacherProfile, headers: dict[str, str], secrets: tuple[str, ...]) -> Transport:
    """The profile's transport in this process (pyreqwest or aiohttp: `transport_name`)."""
    name = transport_name(profile)
    if name == "pyreqwest":
        return ReqwestTransport(profile, headers, secrets)
    return AiohttpTransport(profile, headers, secrets)


class _Body:
    """A response body being read: refuses more than `cap` bytes (announced or received)."""

    __slots__ = ("cap", "chunks", "size")

    def __init__(self, cap: int, announced: int | None):
        if announced is not None and announced > cap:
            raise TeacherError(f"response of {announced} bytes exceeds max_response_bytes={cap}", 1, "oversized_body")
        self.cap, self.chunks, self.size = cap, [], 0

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.cap:
            raise TeacherError(f"response exceeds max_response_bytes={self.cap}", 1, "oversized_body")
        self.chunks.append(chunk)

    def bytes(self) -> bytes:
        return self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)


def _stalled(seconds: float) -> RetryableError:
    return RetryableError("read_timeout", f"response body stalled: no bytes for {seconds:g}s")


def _cause(err: BaseException) -> str:
    """pyreqwest errors say "connection error" and keep the why in `details["causes"]`: the innermost one."""
    causes = (getattr(err, "details", None) or {}).get("causes") or []
    last = causes[-1].get("message") if causes and isinstance(causes[-1], dict) else None
    return f"{err}: {last}" if last else str(err)


def _connection(err: BaseException, secrets: tuple[str, ...]) -> RetryableError:
    return RetryableError("connection", f"connection error ({type(err).__name__}: "
                          f"{short_reason(redact_text(_cause(err), secrets), 120)})")


class _IdleWatch:
    """The idle deadlines of the bodies being read, checked by one timer every quarter of `seconds` instead of a
    timer per call (`asyncio.timeout` arms, moves and cancels one per call): a body that gets no bytes for
    `seconds` has its task cancelled, and `stalled(task)` says so; it is noticed within 1.25 x `seconds`."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.deadlines: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def touch(self, task: asyncio.Task[Any], loop: asyncio.AbstractEventLoop) -> None:
        self.deadlines[task] = loop.time() + self.seconds
        if self._timer is None:
            self._timer = loop.call_later(self.seconds / 4, self._check, loop)

    def stalled(self, task: asyncio.Task[Any]) -> bool:
        """Whether the watch cancelled `task` (once per cancellation): True only when no other cancellation of it
        is pending, so an outside cancel is never swallowed."""
        if task not in self._expired:
            return False
        self._expired.discard(task)
        return task.uncancel() == 0

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for task, deadline in list(self.deadlines.items()):
            if deadline <= now:
                del self.deadlines[task]
                self._expired.add(task)
                task.cancel()
        self._timer = loop.call_later(self.seconds / 4, self._check, loop) if self.deadlines else None


class ReqwestTransport:
    """pyreqwest: one client (connection pool of `max_concurrency`), streamed responses read chunk by chunk."""

    def __init__(self, profile: TeacherProfile, headers: dict[str, str], secrets: tuple[str, ...]):
        from pyreqwest import exceptions
        from pyreqwest.client import ClientBuilder

        self.profile, self.secrets = profile, secrets
        self._errors = exceptions  # imported once here, not on every call: pyreqwest is optional (`auto`)
        self._idle = _IdleWatch(profile.read_timeout_s)
        self._client = (
            ClientBuilder()
            .max_connections(profile.max_concurrency)
            .timeout(timedelta(seconds=profile.timeout_s))
            .connect_timeout(timedelta(seconds=profile.connect_timeout_s))
            .no_proxy()
            .default_headers(headers)
            .build()
        )

    async def post(self, url: str, data: bytes) -> Answer:
        p, errors = self.profile, self._errors
        body = None
        try:
            # an empty read buffer: pyreqwest hands the response over at the headers, not once its buffer has
            # filled (with any buffer a server that stalls after the headers was caught only by timeout_s)
            request = self._client.post(url).body_bytes(data).streamed_read_buffer_limit(0)
            async with request.build_streamed() as resp:
                status, retry_after = resp.status, resp.get_header("retry-after")
                length = resp.get_header("content-length")
                size = int(length) if length and length.isdigit() else None
                body = _Body(p.max_response_bytes, size)
                reader, loop, task, watch = resp.body_reader, asyncio.get_running_loop(), asyncio.current_task(), self._idle
                assert task is not None
                watch.touch(task, loop)  # re-armed after every chunk
                try:
                    # stop at Content-Length without waiting for the end-of-stream signal: one hand-off from
                    # the native thread less per call
                    while body.size != size and (chunk := await reader.read_chunk()) is not None:
                        body.add(chunk.to_bytes())
                        watch.touch(task, loop)
                except asyncio.CancelledError:
                    if watch.stalled(task):
                        raise _stalled(p.read_timeout_s) from None
                    raise
                finally:
                    watch.deadlines.pop(task, None)
        except TimeoutError as err:
            if body is not None and not isinstance(err, errors.RequestTimeoutError):
                raise _stalled(p.read_timeout_s) from None
            raise RetryableError("timeout", f"no answer within {p.timeout_s:g}s") from None
        except errors.RequestError as err:
            # a body error (DecodeError) may surface while pyreqwest hands the response over, before `resp` exists
            if body is not None or isinstance(err, errors.DecodeError):
                raise RetryableError("truncated_body", f"truncated response body ({_cause(err)})") from None
            raise _connection(err, self.secrets) from None
        except OSError as err:
            raise _connection(err, self.secrets) from None
        return status, retry_after, body.bytes()

    async def close(self) -> None:
        await self._client.close()


class AiohttpTransport:
    """aiohttp: one session (connector limit `max_concurrency`); what is buffered is taken without a timer."""

    def __init__(self, profile: TeacherProfile, headers: dict[str, str], secrets: tuple[str, ...]):
        self.profile, self.secrets = profile, secrets
        connector = aiohttp.TCPConnector(limit=profile.max_concurrency, limit_per_host=0, ttl_dns_cache=300)
        timeout = aiohttp.ClientTimeout(total=profile.timeout_s, sock_connect=profile.connect_timeout_s)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers)

    async def post(self, url: str, data: bytes) -> Answer:
        try:
            async with self._session.post(url, data=data) as resp:
                return resp.status, resp.headers.get("Retry-After"), await self._read(resp)
        except TimeoutError:
            raise RetryableError("timeout", f"no answer within {self.profile.timeout_s:g}s") from None
        except aiohttp.ClientPayloadError as err:
            raise RetryableError("truncated_body", f"truncated response body ({type(err).__name__})") from None
        except (aiohttp.ClientError, OSError) as err:
            raise _connection(err, self.secrets) from None

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        p = self.profile
        body = _Body(p.max_response_bytes, resp.content_length)
        content = resp.content
        while True:
            # a small body usually arrives with the headers: only an actual wait for bytes arms the idle timer
            chunk = content.read_nowait() if not content.at_eof() else b""
            if not chunk and not content.at_eof():
                try:
                    chunk = await asyncio.wait_for(content.readany(), p.read_timeout_s)
                except TimeoutError:
                    raise _stalled(p.read_timeout_s) from None
            if not chunk:
                return body.bytes()
            body.add(chunk)

    async def close(self) -> None:
        await self._session.close()
