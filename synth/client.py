"""Async client for any OpenAI-compatible chat-completions server (vLLM, SGLang, transformers serve, hosted).

One HTTP transport (`synth.transport`: pyreqwest, else aiohttp), a semaphore bounding requests in flight
over all endpoints, least-loaded (or round-robin) endpoint choice, per-request timeout, retries with
exponential backoff and full jitter on 429 (honouring Retry-After), 408/5xx, connection errors, timeouts
and truncated or invalid JSON bodies; other 4xx fail at once. Every completed call goes through the
persistent `CallCache`. When retries run out the call raises `TeacherError` with a one-line reason the
step records.

Why not datatrove's InferenceRunner: it is a datatrove PipelineStep over Documents with its own
writer, one endpoint per rank, a fixed 5*2^n s backoff without Retry-After or jitter, a cache keyed
by document and rollout rather than by request content, and it needs aiosqlite and loguru. Our steps
work on polars frames inside one build and need content-keyed caching shared across builds.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import orjson

from curate.errors import MedcurateError
from curate.redact import redact_text, short_reason
from curate.runner.balance import shared_load
from synth.cache import CallCache, call_key
from synth.config import TeacherProfile
from synth.errors import RetryableError, TeacherError
from synth.gc_tuning import client_gc
from synth.transport import Transport, open_transport

__all__ = ["Choice", "ClientStats", "Completion", "TeacherClient", "TeacherError", "check_completion", "run_sync",
           "usable"]

T = TypeVar("T")

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 521, 522, 524, 529}
#: finish_reason values of a completed generation (OpenAI, vLLM, SGLang, TGI, transformers serve).
FINISH_REASONS = frozenset({"stop", "length", "eos", "eos_token", "stop_sequence", "end_turn", "tool_calls",
                            "function_call", "content_filter"})


def check_completion(body: Any) -> None:
    """ValueError unless `body` is a usable chat completion: every choice has non-empty text and a known
    finish_reason. Only such bodies are returned or cached (issue 10: `{"choices":[{}]}` and a null
    `content` used to be cached as successes and served to every later run)."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices:
        raise ValueError("response has no `choices`")
    for i, ch in enumerate(choices):
        if not isinstance(ch, dict):
            raise ValueError(f"choice {i} is not an object")
        msg = ch.get("message")
        text = msg.get("content") if isinstance(msg, dict) else None
        if text is None:
            text = ch.get("text")
        if not isinstance(text, str) or not text:
            raise ValueError(f"choice {i} has no text (content {type(text).__name__})")
        if ch.get("finish_reason") not in FINISH_REASONS:
            raise ValueError(f"choice {i} has finish_reason {str(ch.get('finish_reason'))[:20]!r}, not a completed one")


def usable(body: Any) -> bool:
    try:
        check_completion(body)
    except ValueError:
        return False
    return True


def _error_reason(raw: bytes) -> str:
    """The server's own short reason from an error body (`error.message`, `message`, `detail`), else its text."""
    text = raw[:4096].decode("utf-8", "replace")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return text
    if isinstance(body, dict):
        err = body.get("error")
        for cand in (err.get("message") if isinstance(err, dict) else err, body.get("message"), body.get("detail")):
            if isinstance(cand, str) and cand.strip():
                return cand
    return text


@dataclass(frozen=True)
class Choice:
    text: str
    finish_reason: str | None
    logprobs: Any = None  # the choice's `logprobs` object, when the request asked for them


@dataclass(frozen=True)
class Completion:
    """The parts of a chat-completions answer the steps use."""

    choices: list[Choice]
    usage: dict[str, int]
    cached: bool = False

    @property
    def text(self) -> str:
        return self.choices[0].text

    @property
    def finish_reason(self) -> str | None:
        return self.choices[0].finish_reason

    @classmethod
    def from_body(cls, body: dict[str, Any], cached: bool = False) -> Completion:
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ValueError("response has no `choices`")
        out = []
        for ch in choices if len(choices) == 1 else sorted(choices, key=lambda c: c.get("index", 0)):
            msg = ch.get("message") or {}
            text = msg.get("content")
            if text is None and "text" in ch:
                text = ch["text"]
            if not isinstance(text, str):
                text = ""
            out.append(Choice(text=text, finish_reason=ch.get("finish_reason"), logprobs=ch.get("logprobs")))
        usage = body.get("usage") or {}
        return cls(
            choices=out,
            usage={k: int(usage.get(k) or 0) for k in ("prompt_tokens", "completion_tokens")},
            cached=cached,
        )


@dataclass
class ClientStats:
    """Counters for progress lines and the manifest."""

    calls: int = 0
    cache_hits: int = 0
    requests: int = 0  # HTTP requests sent, retries included
    retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def as_dict(self) -> dict[str, Any]:
        secs = max(time.perf_counter() - self.started, 1e-9)
        return {
            "calls": self.calls, "cache_hits": self.cache_hits, "requests": self.requests,
            "retries": self.retries, "failures": self.failures,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "errors": dict(sorted(self.errors.items())),
            "requests_per_s": round(self.requests / secs, 2),
            "tokens_per_s": round((self.prompt_tokens + self.completion_tokens) / secs, 1),
        }


def _label(url: str) -> str:
    """An endpoint as it may appear in logs: scheme://host:port, no credentials, path or query."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class TeacherClient:
    """Use as `async with TeacherClient(profile, cache) as client: await client.chat(...)`."""

    def __init__(self, profile: TeacherProfile, cache: CallCache | None = None, *, seed: int | None = None,
                 expected_calls: int = 0):
        self.profile = profile
        self.expected_calls = expected_calls  # a hint for the transport (`open_transport`)
        self.cache = cache
        self.stats = ClientStats()
        self._rng = random.Random(seed)
        self._inflight = [0] * len(profile.urls)
        self._rr = itertools.count()
        self._transport: Transport | None = None
        self._sem: asyncio.Semaphore | None = None
        self._pending: dict[str, asyncio.Future[Completion]] = {}
        self._ready: asyncio.Task[None] | None = None
        self._prefetched: dict[str, dict[str, Any]] = {}  # see `prefetch`
        self._absent: set[str] = set()
        self._headers = {"Content-Type": "application/json"}
        key = profile.api_key()
        self._secrets = (key,) if key else ()
        if key:
            self._headers["Authorization"] = f"Bearer {key}"

    async def __aenter__(self) -> TeacherClient:
        self._transport = open_transport(self.profile, self._headers, self._secrets, self.expected_calls)
        self._sem = asyncio.Semaphore(self.profile.max_concurrency)
        self.stats = ClientStats()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._transport is not None:
            await self._transport.close()
            self._transport = None

    def request_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Generation params as sent (profile pass-through options first, step params win)."""
        return {**self.profile.extra_body, **params}

    def key(self, messages: list[dict[str, str]], params: dict[str, Any], template: str) -> str:
        return call_key(self.profile.model, self.request_params(params), messages, template)

    def prefetch(self, keys: list[str]) -> int:
        """Look up many calls' cache entries at once (`CallCache.get_many`) before they are made: `chat` then
        serves those hits from memory and skips the per-call SELECT for the keys found absent. Returns the
        number of usable hits. A call another process caches after the prefetch is paid again (it was in
        flight in both builds at once); calls of this client are never paid twice (`_absent` forgets a key
        once this client caches it, and concurrent identical calls share one request)."""
        if self.cache is None or not keys:
            return 0
        found = self.cache.get_many(keys)
        usable_hits = {k: body for k, body in found.items() if usable(body)}
        self._prefetched.update(usable_hits)
        self._absent.update(k for k in keys if k not in usable_hits)
        if self._ready is None and len(usable_hits) < len(keys):  # calls will be made: probe the server meanwhile
            self._ready = asyncio.ensure_future(self.preflight())
        return len(usable_hits)

    async def chat(self, messages: list[dict[str, str]], params: dict[str, Any], *, template: str,
                   key: str | None = None) -> Completion:
        """One chat completion, from the cache when this exact call was completed before. `key`: this call's
        `self.key(messages, params, template)` when the caller computed it already (for `prefetch`)."""
        self.stats.calls += 1
        params = self.request_params(params)
        if key is None:
            key = call_key(self.profile.model, params, messages, template)
        if self.cache is not None:
            hit = self._prefetched.pop(key, None)
            if hit is None and key not in self._absent:
                hit = self.cache.get(key)
            if hit is not None and usable(hit):  # a bad body cached by an older version is a miss
                self.stats.cache_hits += 1
                return Completion.from_body(hit, cached=True)
        if self._ready is None:
            self._ready = asyncio.ensure_future(self.preflight())
        if not self._ready.done():
            await asyncio.shield(self._ready)
        elif self._ready.exception() is not None:
            raise self._ready.exception()  # type: ignore[misc]
        pending = self._pending.get(key)
        if pending is not None:  # the same call is already in flight: share its answer
            result = await asyncio.shield(pending)
            self.stats.cache_hits += 1
            return Completion(result.choices, result.usage, cached=True)
        fut: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._pending[key] = fut
        try:
            request = {"model": self.profile.model, "messages": messages, **params}
            body, raw = await self._post(request)
            completion = Completion.from_body(body)
            if self.cache is not None:  # the answer is used only once it is committed (see synth.cache)
                # no other request in flight: no reply will join this commit soon, so it need not linger
                await self.cache.put(key, model=self.profile.model, template=template, request=request,
                                     response=body, response_raw=raw, loop=asyncio.get_running_loop(),
                                     more=any(self._inflight))
                self._absent.discard(key)
            self.stats.prompt_tokens += completion.usage["prompt_tokens"]
            self.stats.completion_tokens += completion.usage["completion_tokens"]
            fut.set_result(completion)
            return completion
        except BaseException as err:
            if not fut.done():
                fut.set_exception(err)
                fut.exception()  # mark retrieved: sharing waiters re-raise it themselves
            raise
        finally:
            del self._pending[key]

    async def probed(self) -> None:
        """Wait until the preflight probe (`preflight`), when one has started, is over; its error is left to
        the calls that need the server."""
        if self._ready is not None and not self._ready.done():
            await asyncio.wait([self._ready])

    async def preflight(self) -> None:
        """Before the first uncached call (started as soon as `prefetch` finds a key not cached, so it runs
        while the rows are prepared): fail fast with a clear error when no endpoint can be reached,
        or when every endpoint that lists its models (GET /models) lacks ours. A build whose calls are
        all cached never gets here, so it re-runs offline."""
        p = self.profile
        unreachable: list[str] = []
        served: list[list[str]] = []
        # a separate, closing connection: some servers drop keep-alive after an error status, and a stale
        # pooled connection would cost the first real call a retry
        async with aiohttp.ClientSession(headers=self._headers, connector=aiohttp.TCPConnector(force_close=True),
                                         timeout=aiohttp.ClientTimeout(total=p.connect_timeout_s)) as session:
            for url in p.urls:
                await self._probe(session, url, unreachable, served)
        if len(unreachable) == len(p.urls):
            raise MedcurateError(
                f"teacher not reachable: {', '.join(unreachable)}",
                hint="start the server (e.g. `vllm serve MODEL --served-model-name NAME --port 8000`) "
                "or point the build at it with --teacher-url http://HOST:PORT/v1 --teacher-model NAME",
            )
        if served and all(p.model not in ids for ids in served):
            listed = sorted({i for ids in served for i in ids if i})
            raise MedcurateError(
                f"teacher model {p.model!r} is not served at {', '.join(_label(u) for u in p.urls)}",
                hint=f"served models: {', '.join(listed) or 'none'}; pass --teacher-model with one of them",
            )

    @staticmethod
    async def _probe(session: aiohttp.ClientSession, url: str, unreachable: list[str], served: list[list[str]]) -> None:
        try:
            async with session.get(f"{url}/models") as r:
                if r.status == 200:
                    served.append([m.get("id") for m in (orjson.loads(await r.read()).get("data") or [])])
        except (aiohttp.ClientConnectionError, TimeoutError, OSError) as err:
            unreachable.append(f"{_label(url)} ({type(err).__name__})")
        except (orjson.JSONDecodeError, AttributeError, TypeError, aiohttp.ClientError):
            pass  # a server without a usable /models: let the real calls decide

    def _pick(self) -> int:
        n = len(self._inflight)
        if n == 1:
            return 0
        start = next(self._rr) % n
        if self.profile.balance == "round_robin":
            return start
        order = [(start + i) % n for i in range(n)]
        return min(order, key=lambda i: self._inflight[i])

    def _backoff(self, attempt: int) -> float:
        cap = min(self.profile.backoff_max_s, self.profile.backoff_base_s * (2**attempt))
        return self._rng.uniform(cap / 2, cap)  # jitter so a burst of failures does not retry in lockstep

    async def _post(self, request: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        """The validated completion body, parsed and as received (the cache stores the bytes as they came)."""
        assert self._transport is not None and self._sem is not None, "use `async with TeacherClient(...)`"
        p = self.profile
        data = orjson.dumps(request)
        last = "no attempt made"
        shared = shared_load() if len(p.urls) > 1 and p.balance != "round_robin" else None
        for attempt in range(p.max_retries + 1):
            try:
                async with self._sem:
                    i = await shared.acquire(len(p.urls)) if shared else self._pick()  # over all actors, or this client
                    url = p.urls[i] + "/chat/completions"
                    self._inflight[i] += 1
                    self.stats.requests += 1
                    try:
                        body = await self._once(url, data)
                    finally:
                        self._inflight[i] -= 1
                        if shared:
                            shared.release(len(p.urls), i)
                return body
            except RetryableError as r:
                last = f"{r.detail} from {_label(url)}"
                self.stats.errors[r.reason] = self.stats.errors.get(r.reason, 0) + 1
                if attempt == p.max_retries:
                    break
                self.stats.retries += 1
                wait = self._backoff(attempt)
                if r.wait is not None:
                    wait = max(wait, min(r.wait, p.retry_after_max_s))
                await asyncio.sleep(wait)
            except TeacherError as err:
                self.stats.failures += 1
                self.stats.errors[err.reason] = self.stats.errors.get(err.reason, 0) + 1
                err.detail = f"{err.detail} from {_label(url)}"
                err.attempts = attempt + 1
                raise
        self.stats.failures += 1
        raise TeacherError(f"retries exhausted; last error: {last}", p.max_retries + 1, "retries_exhausted")

    async def _once(self, url: str, data: bytes) -> tuple[dict[str, Any], bytes]:
        assert self._transport is not None
        status, retry_after, raw = await self._transport.post(url, data)
        if status != 200:
            # status + the server's short reason, credentials masked: error bodies may echo the request headers
            reason = short_reason(redact_text(_error_reason(raw), self._secrets), 120)
            if status in _RETRY_STATUS:
                raise RetryableError(f"http_{status}", f"HTTP {status}: {reason}", _retry_after(retry_after))
            raise TeacherError(f"HTTP {status}: {reason}", 1)
        try:
            body = orjson.loads(raw)
            check_completion(body)
        except (orjson.JSONDecodeError, ValueError, AttributeError, TypeError) as err:
            raise RetryableError("invalid_body", f"invalid completion body ({len(raw)} bytes: {err})") from None
        return body, raw


def _run(factory: Callable[[], Awaitable[T]]) -> T:
    """asyncio.run, on uvloop when it is installed (about half the client CPU per request), with the collector
    tuned for many requests in flight (synth.gc_tuning)."""
    try:
        import uvloop
    except ImportError:
        uvloop = None
    with client_gc():  # fewer garbage collections while hundreds of requests are in flight
        if uvloop is None:
            return asyncio.run(factory())  # type: ignore[arg-type]
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(factory())  # type: ignore[arg-type]


def run_sync(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine from sync code, also when the caller already runs an event loop (notebooks)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run(factory)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = _run(factory)
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = err

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
