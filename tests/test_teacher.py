"""Teacher client, call cache and profiles, against the scripted loopback server with injected faults."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from curate.errors import MedcurateError, RecipeError
from synth.cache import CallCache, call_key
from synth.client import TeacherClient, TeacherError
from synth.config import TeacherProfile, resolve_teacher
from synth.testing import Reply, ScriptedServer

MSGS = [{"role": "user", "content": "Say hi"}]


#: the HTTP transports a profile can get: in this process (synth/transport.py) or in the helper process
#: (synth/transport_helper.py, which runs the default one there); tests/test_hostile.py uses them too
TRANSPORTS = {"pyreqwest": {"transport": "pyreqwest", "transport_process": "never"},
              "aiohttp": {"transport": "aiohttp", "transport_process": "never"},
              "helper": {"transport_process": "always"}}


@pytest.fixture(params=list(TRANSPORTS))
def transport(request) -> dict:
    """Fault tests run on both HTTP transports in this process (synth/transport.py) and in the HTTP helper
    process (synth/transport_helper.py): same retries, same reasons."""
    return TRANSPORTS[request.param]


def fast_profile(*urls: str, **kw) -> TeacherProfile:
    base = dict(model="scripted", urls=list(urls), max_retries=3, backoff_base_s=0.01, backoff_max_s=0.05,
                timeout_s=5.0, max_concurrency=8)
    return TeacherProfile(**{**base, **kw})


def chat(profile: TeacherProfile, cache: CallCache | None = None, n: int = 1, params: dict | None = None):
    async def go():
        async with TeacherClient(profile, cache, seed=0) as client:
            results = await asyncio.gather(
                *(client.chat([{"role": "user", "content": f"q{i}"}], {"seed": i, **(params or {})}, template="t@1")
                  for i in range(n)),
                return_exceptions=True,
            )
            return results, client.stats

    results, stats = asyncio.run(go())
    for r in results:
        if isinstance(r, MedcurateError):  # build-level errors (unreachable teacher) are raised, not recorded
            raise r
    return results, stats


# -- profiles -----------------------------------------------------------------------------------------

def test_default_profile_is_vllm_local():
    p = resolve_teacher(None)
    assert p.urls == ["http://127.0.0.1:8000/v1"] and p.api_key_env is None and p.max_concurrency >= 100


def test_cli_overrides_and_inline_profiles():
    p = resolve_teacher("vllm-local", {"teacher_url": ["http://a:1/v1/", "http://b:2/v1"], "teacher_model": "m",
                                       "dry_run": None})
    assert p.urls == ["http://a:1/v1", "http://b:2/v1"] and p.model == "m"
    assert resolve_teacher(None, {"teacher_url": "http://a:1/v1,http://b:2/v1"}).urls == ["http://a:1/v1", "http://b:2/v1"]
    inline = resolve_teacher({"profile": "vllm-local", "model": "big", "max_concurrency": 512})
    assert inline.model == "big" and inline.max_concurrency == 512 and inline.urls == ["http://127.0.0.1:8000/v1"]


def test_bad_profiles_are_clear_errors():
    with pytest.raises(ValidationError, match="max_concurency"):
        resolve_teacher({"model": "m", "max_concurency": 3})
    with pytest.raises(ValidationError, match="http://"):
        resolve_teacher({"model": "m", "urls": ["127.0.0.1:8000/v1"]})
    with pytest.raises(ValidationError, match="NAME of an environment variable"):
        resolve_teacher({"model": "m", "api_key_env": "sk-abc123-secret"})
    with pytest.raises(ValidationError, match="look like credentials"):
        resolve_teacher({"model": "m", "extra_body": {"api_key": "sk-123"}})
    with pytest.raises(RecipeError, match="no teacher profile named 'nope'"):
        resolve_teacher("nope")


def test_recipe_validation_checks_the_teacher():
    from curate.recipe import validate_recipe

    base = {"name": "x", "description": "d", "license": "mit",
            "sources": [{"name": "s", "format": "medqa", "path": "x.json"}], "steps": []}
    validate_recipe({**base, "teacher": "vllm-local"})
    with pytest.raises(RecipeError, match="teacher.timeout"):
        validate_recipe({**base, "teacher": {"model": "m", "timeout": 3}})


def test_api_key_only_from_env_and_never_in_stats(scripted_server, monkeypatch, transport):
    secret = "sk-test-0123456789abcdef"
    p = fast_profile(scripted_server.url, api_key_env="MEDCURATE_TEST_KEY", **transport)
    with pytest.raises(RecipeError, match="MEDCURATE_TEST_KEY"):
        chat(p)
    monkeypatch.setenv("MEDCURATE_TEST_KEY", secret)
    (res,), stats = chat(p)
    assert scripted_server.log[0]["headers"]["authorization"] == f"Bearer {secret}"
    assert secret not in json.dumps(stats.as_dict()) and secret not in json.dumps(p.public())


# -- retries and faults ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("fault", "kind"), [("503", "http_503"), ("500", "http_500"), ("drop", "connection"),
                                             ("cut", "truncated_body"), ("badjson", "invalid_body")])
def test_transient_faults_are_retried(scripted_server, fault, kind, transport):
    scripted_server.inject(fault, fault)
    (res,), stats = chat(fast_profile(scripted_server.url, **transport))
    assert not isinstance(res, Exception), res
    assert res.text.endswith("Answer: A")
    assert [e["fault"] for e in scripted_server.log] == [fault, fault, None]
    assert stats.retries == 2 and stats.requests == 3 and stats.failures == 0 and stats.errors == {kind: 2}


def test_429_honours_retry_after(scripted_server, transport):
    replies = iter([Reply(fault="429", retry_after="1")])
    scripted_server.responder = lambda req: next(replies, Reply("Answer: B"))
    t0 = time.monotonic()
    (res,), stats = chat(fast_profile(scripted_server.url, **transport))
    assert res.text == "Answer: B"
    gap = scripted_server.log[1]["t"] - scripted_server.log[0]["t"]
    assert gap >= 0.95, f"retried after {gap:.2f}s despite Retry-After: 1"
    assert time.monotonic() - t0 < 5 and stats.errors == {"http_429": 1}


def test_hang_past_timeout_is_retried(scripted_server, transport):
    scripted_server.inject("hang")
    (res,), stats = chat(fast_profile(scripted_server.url, timeout_s=0.3, **transport))
    assert res.text.endswith("Answer: A") and stats.errors == {"timeout": 1}


def test_retries_exhausted_give_a_failure_record(scripted_server, transport):
    scripted_server.inject(*["503"] * 4)
    (res,), stats = chat(fast_profile(scripted_server.url, max_retries=3, **transport))
    assert isinstance(res, TeacherError)
    assert res.attempts == 4 and "retries exhausted" in res.detail and "HTTP 503" in res.detail
    assert "127.0.0.1" in res.detail and stats.failures == 1


def test_client_errors_are_not_retried(scripted_server, transport):
    scripted_server.inject("400")
    (res,), stats = chat(fast_profile(scripted_server.url, **transport))
    assert isinstance(res, TeacherError) and res.attempts == 1 and "HTTP 400" in res.detail
    assert str(res).endswith(f"from http://127.0.0.1:{scripted_server.port} (after 1 attempt)")
    assert len(scripted_server.log) == 1


def test_several_endpoints_share_load_and_cover_a_dead_one(scripted_server, second_server, transport):
    # 50 ms of generation each, so the 40 calls overlap and the least-loaded choice alternates (without it a
    # busy machine answered one server's calls first: 33/7)
    for srv in (scripted_server, second_server):
        srv.responder = lambda req: Reply("Answer: A", delay=0.05)
    (*res,), stats = chat(fast_profile(scripted_server.url, second_server.url, **transport), n=40)
    assert all(not isinstance(r, Exception) for r in res)
    assert len(scripted_server.log) >= 10 and len(second_server.log) >= 10
    # one endpoint drops every connection: retries land on the other one
    second_server.responder = lambda req: Reply(fault="drop")
    scripted_server.reset()
    res, stats = chat(fast_profile(scripted_server.url, second_server.url, balance="round_robin",
                                   max_retries=6, **transport), n=20)
    assert all(not isinstance(r, Exception) for r in res)
    assert len(scripted_server.completed_bodies()) == 20 and stats.errors.get("connection", 0) > 0


def test_bounded_concurrency(scripted_server, transport):
    live = {"now": 0, "max": 0}

    def slow(req):
        return Reply("Answer: A", delay=0.05)

    scripted_server.responder = slow
    p = fast_profile(scripted_server.url, max_concurrency=5, **transport)

    async def go():
        async with TeacherClient(p) as client:
            orig = client._once

            async def counted(url, data):
                live["now"] += 1
                live["max"] = max(live["max"], live["now"])
                try:
                    return await orig(url, data)
                finally:
                    live["now"] -= 1

            client._once = counted
            await asyncio.gather(*(client.chat([{"role": "user", "content": str(i)}], {}, template="t") for i in range(30)))

    asyncio.run(go())
    assert live["max"] == 5


def test_auto_transport_is_pyreqwest_when_installed_else_aiohttp(scripted_server, monkeypatch):
    import importlib.util

    from synth import transport as tr

    p = fast_profile(scripted_server.url)
    assert p.transport == "auto" and tr.transport_name(p) == "pyreqwest"
    assert tr.transport_name(fast_profile(scripted_server.url, transport="aiohttp")) == "aiohttp"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyreqwest" else real(name, *a))
    assert tr.transport_name(p) == "aiohttp"

    async def go():
        async with TeacherClient(p) as client:
            assert isinstance(client._transport, tr.AiohttpTransport)
            return await client.chat(MSGS, {}, template="t@1")

    assert asyncio.run(go()).text.endswith("Answer: A")  # the fallback really answers


def test_vllm_options_pass_through(scripted_server):
    p = fast_profile(scripted_server.url, extra_body={"top_k": 20})
    chat(p, params={"guided_choice": ["A", "B"], "n": 2})
    body = scripted_server.log[0]["body"]
    assert body["top_k"] == 20 and body["guided_choice"] == ["A", "B"] and body["n"] == 2 and body["seed"] == 0


# -- cache --------------------------------------------------------------------------------------------------

def test_cache_pays_once_and_survives_reopen(scripted_server, tmp_path: Path):
    db = tmp_path / "calls.sqlite"
    with CallCache(db) as cache:
        res, stats = chat(fast_profile(scripted_server.url), cache, n=5)
        assert stats.requests == 5 and len(cache) == 5
    with CallCache(db) as cache:
        res2, stats2 = chat(fast_profile(scripted_server.url), cache, n=5)
    assert stats2.requests == 0 and stats2.cache_hits == 5
    assert [r.text for r in res2] == [r.text for r in res] and all(r.cached for r in res2)
    assert len(scripted_server.log) == 5
    mode = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_only_a_reply_with_nothing_else_in_flight_tells_the_cache_to_commit_at_once(scripted_server, tmp_path: Path,
                                                                                    monkeypatch):
    """The client passes `more=False` to the cache's `put` when no other request is in flight (the writer then
    commits at once instead of lingering for replies that are not coming: the end of a step)."""
    seen: list[bool] = []
    real = CallCache.put

    def spy(self, *args, **kwargs):
        seen.append(kwargs["more"])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(CallCache, "put", spy)
    scripted_server.responder = lambda req: Reply("Answer: A", delay=0.1 * int(req["seed"]))  # replies 0.1 s apart

    async def go() -> None:
        async with TeacherClient(fast_profile(scripted_server.url), cache) as client:
            await asyncio.gather(*(client.chat(MSGS, {"seed": i}, template="t") for i in range(4)))

    with CallCache(tmp_path / "c.sqlite") as cache:
        asyncio.run(go())
    assert seen == [True, True, True, False]


def test_failed_calls_are_not_cached(scripted_server, tmp_path: Path):
    scripted_server.inject(*["503"] * 4)
    with CallCache(tmp_path / "c.sqlite") as cache:
        (res,), _ = chat(fast_profile(scripted_server.url), cache)
        assert isinstance(res, TeacherError) and len(cache) == 0
        (res,), _ = chat(fast_profile(scripted_server.url), cache)
        assert not isinstance(res, Exception) and len(cache) == 1


def test_cache_key_covers_model_params_messages_and_template():
    k = call_key("m", {"temperature": 0.7, "seed": 1}, MSGS, "cot@1")
    assert k == call_key("m", {"seed": 1, "temperature": 0.7}, MSGS, "cot@1")  # order-free
    variants = [
        call_key("m2", {"temperature": 0.7, "seed": 1}, MSGS, "cot@1"),
        call_key("m", {"temperature": 0.8, "seed": 1}, MSGS, "cot@1"),
        call_key("m", {"temperature": 0.7, "seed": 2}, MSGS, "cot@1"),
        call_key("m", {"temperature": 0.7, "seed": 1}, [{"role": "user", "content": "Say hi!"}], "cot@1"),
        call_key("m", {"temperature": 0.7, "seed": 1}, MSGS, "cot@2"),
    ]
    assert k not in variants and len(set(variants)) == len(variants)


def test_identical_calls_in_flight_are_sent_once(scripted_server, tmp_path: Path):
    scripted_server.responder = lambda req: Reply("Answer: A", delay=0.1)

    async def go():
        with CallCache(tmp_path / "c.sqlite") as cache:
            async with TeacherClient(fast_profile(scripted_server.url), cache) as client:
                return await asyncio.gather(*(client.chat(MSGS, {"seed": 1}, template="t") for _ in range(10)))

    res = asyncio.run(go())
    assert len(scripted_server.log) == 1 and {r.text for r in res} == {"Answer: A"}


# -- preflight ----------------------------------------------------------------------------------------------

def test_unreachable_teacher_fails_fast_with_a_hint(scripted_server):
    port = scripted_server.port
    scripted_server.stop()
    t0 = time.monotonic()
    with pytest.raises(MedcurateError, match=rf"teacher not reachable: http://127.0.0.1:{port}") as err:
        chat(fast_profile(f"http://127.0.0.1:{port}/v1", max_retries=6))
    assert "--teacher-url" in str(err.value) and time.monotonic() - t0 < 5


def test_wrong_model_name_fails_fast_listing_served_models():
    with ScriptedServer(models=["meta-llama/Llama-3.1-70B-Instruct"]) as srv:
        with pytest.raises(MedcurateError, match="'scripted' is not served") as err:
            chat(fast_profile(srv.url))
        assert "meta-llama/Llama-3.1-70B-Instruct" in str(err.value) and srv.count == 0
        (res,), _ = chat(fast_profile(srv.url, model="meta-llama/Llama-3.1-70B-Instruct"))
        assert res.text.endswith("Answer: A")


def test_fully_cached_rerun_needs_no_server(scripted_server, tmp_path: Path):
    with CallCache(tmp_path / "c.sqlite") as cache:
        first, _ = chat(fast_profile(scripted_server.url), cache, n=3)
        scripted_server.stop()
        again, stats = chat(fast_profile(scripted_server.url), cache, n=3)
    assert [r.text for r in again] == [r.text for r in first] and stats.cache_hits == 3
