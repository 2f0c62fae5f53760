"""The HTTP helper process (synth/transport_helper.py): calls really run there, a dead helper costs a retry (not a
call), a cancelled call frees its connection there, and only large clients use it under `auto`.
The fault suite of tests/test_teacher.py and the hostile bodies of tests/test_hostile.py also run through it."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from synth import transport_helper
from synth.client import TeacherClient
from synth.testing import Reply
from synth.transport import ReqwestTransport
from synth.transport_helper import HelperTransport
from tests.test_teacher import fast_profile


@pytest.fixture
def fresh_helper(monkeypatch):
    """A helper process of this test's own (the process-wide one is kept for the other tests)."""
    monkeypatch.setattr(transport_helper, "_HELPER", None)
    yield
    if transport_helper._HELPER is not None:
        transport_helper._HELPER.close()


def _messages(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"question {i}\nCorrect option: {'ABCD'[i % 4]}"}]


def test_calls_run_in_the_helper_and_answer_as_in_process(scripted_server):
    async def ask(process: str) -> tuple[list[str], int]:
        async with TeacherClient(fast_profile(scripted_server.url, transport_process=process)) as client:
            done = await asyncio.gather(*(client.chat(_messages(i), {"seed": i}, template="t@1") for i in range(24)))
            via = getattr(client._transport, "calls_in_helper", 0)
        return [c.text for c in done], via

    (here, none), (there, via) = asyncio.run(ask("never")), asyncio.run(ask("always"))
    assert there == here and len(set(here)) == 4 and none == 0 and via == 24
    assert len(scripted_server.completed_bodies()) == 48


def test_auto_uses_the_helper_only_for_clients_that_expect_many_calls(scripted_server):
    async def kind(expected: int) -> type:
        async with TeacherClient(fast_profile(scripted_server.url), expected_calls=expected) as client:
            return type(client._transport)

    assert asyncio.run(kind(10)) is ReqwestTransport
    assert asyncio.run(kind(transport_helper.HELPER_MIN_CALLS)) is HelperTransport


def test_a_killed_helper_costs_a_retry_not_a_call(scripted_server, fresh_helper):
    """SIGKILL the helper while it holds 8 calls: they fail as retryable connection errors, the client retries
    them in this process, and every call is answered; the calls after it stay in this process."""
    scripted_server.responder = lambda req: Reply("Answer: A", delay=0.5)
    p = fast_profile(scripted_server.url, transport_process="always", max_retries=2)

    async def go():
        async with TeacherClient(p) as client:
            first = [asyncio.ensure_future(client.chat(_messages(i), {}, template="t@1")) for i in range(8)]
            deadline = time.monotonic() + 20
            while len(scripted_server.log) < 8:
                assert time.monotonic() < deadline, "the helper sent no request"
                await asyncio.sleep(0.01)
            os.kill(transport_helper._HELPER._io.proc.pid, signal.SIGKILL)
            answers = await asyncio.gather(*first)
            later = await client.chat(_messages(99), {}, template="t@1")
            return answers + [later], client.stats, client._transport.calls_in_helper

    answers, stats, via = asyncio.run(go())
    assert [a.text for a in answers] == ["Answer: A"] * 9
    assert stats.errors == {"connection": 8} and stats.failures == 0 and via == 8
    assert "exited" in transport_helper._HELPER.broken


def test_a_cancelled_call_is_cancelled_in_the_helper(scripted_server, fresh_helper):
    """One connection (max_concurrency 1): a call cancelled in this process while the server hangs must free
    that connection in the helper too, or the next call waits for the hung one (20 s). aiohttp inside the helper:
    pyreqwest 0.15 keeps a cancelled request's connection until the request ends, in-process too."""
    p = fast_profile(scripted_server.url, transport_process="always", transport="aiohttp", max_concurrency=1,
                     timeout_s=20)

    async def go() -> float:
        async with TeacherClient(p) as client:
            await client.chat(_messages(0), {}, template="t@1")  # the helper is up and holds the connection
            scripted_server.hang_s = 30.0
            scripted_server.inject("hang")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.chat(_messages(1), {}, template="t@1"), 0.5)
            t0 = time.monotonic()
            assert (await client.chat(_messages(2), {}, template="t@1")).text.endswith("Answer: C")
            return time.monotonic() - t0

    assert asyncio.run(go()) < 3
