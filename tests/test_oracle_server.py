"""The benchmarks' oracle server (synth/oracle_server.py) answers as the scripted server with its oracle does: the same
bodies and statuses, over keep-alive connections, requests split across reads or several in one."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from synth.testing import ScriptedServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def oracle_port() -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, "-m", "synth.oracle_server", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()
        assert line and line[0] == "PORT", line
        yield int(line[1])
    finally:
        proc.kill()
        proc.wait(5)


def _requests(medqa_rows) -> list[dict]:
    out = []
    for i, row in enumerate(medqa_rows.head(6).to_dicts()):
        user = f"{row['question']}\nCorrect option: {row['answer']}"
        out.append({"model": "bench", "seed": i, "messages": [{"role": "system", "content": "s"},
                                                              {"role": "user", "content": user}]})
    out.append({"model": "bench", "messages": [{"role": "user", "content": "RESPONSE:\nsome answer"}], "seed": 5})
    return out


def _post(conn: http.client.HTTPConnection, body: bytes) -> tuple[int, dict]:
    conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def test_the_same_answers_as_the_scripted_oracle(oracle_port: int, medqa_rows) -> None:
    lean = http.client.HTTPConnection("127.0.0.1", oracle_port, timeout=10)  # one keep-alive connection for all
    with ScriptedServer() as scripted:
        ref = http.client.HTTPConnection("127.0.0.1", scripted.port, timeout=10)
        for request in _requests(medqa_rows):
            data = json.dumps(request).encode()
            (status, got), (ref_status, want) = _post(lean, data), _post(ref, data)
            assert status == ref_status == 200
            assert {k: v for k, v in got.items() if k != "id"} == {k: v for k, v in want.items() if k != "id"}
            assert got["id"].startswith("chatcmpl-")
        for method, path in (("GET", "/v1/models"), ("GET", "/health")):
            lean.request(method, path)
            ref.request(method, path)
            a, b = lean.getresponse(), ref.getresponse()
            assert (a.status, a.read()) == (b.status, b.read())
    assert _post(lean, b"{not json")[0] == 400
    assert "Answer:" in _post(lean, json.dumps(_requests(medqa_rows)[0]).encode())[1]["choices"][0]["message"]["content"]


def test_requests_split_across_reads_or_sent_together_are_answered_in_order(oracle_port: int, medqa_rows) -> None:
    bodies = [json.dumps(r).encode() for r in _requests(medqa_rows)[:3]]
    wire = b"".join(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(b), b) for b in bodies)
    with socket.create_connection(("127.0.0.1", oracle_port), timeout=10) as sock:
        sock.sendall(wire[:37])  # a head cut in two, then the rest with three requests pipelined
        sock.sendall(wire[37:])
        got = b""
        while got.count(b"HTTP/1.1 200 OK") < 3 or not got.endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, got
            got += chunk
    replies = [json.loads(part[part.index(b"\r\n\r\n") + 4:]) for part in got.split(b"HTTP/1.1 ")[1:]]
    golds = [r["messages"][-1]["content"].rsplit("Correct option: ", 1)[1] for r in _requests(medqa_rows)[:3]]
    assert [r["choices"][0]["message"]["content"].rsplit("Answer: ", 1)[1] for r in replies] == golds
