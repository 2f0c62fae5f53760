"""Teacher fixtures: a scripted OpenAI-compatible server with fault injection, and a real
`transformers serve` of a tiny random-init Llama (one per session), both on loopback only."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from curate.steps import BuildContext
from synth.testing import ScriptedServer


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    """A fresh scripted server (oracle replies unless the test sets `.responder`)."""
    with ScriptedServer(hang_s=5.0) as srv:
        yield srv


@pytest.fixture
def second_server() -> Iterator[ScriptedServer]:
    with ScriptedServer(hang_s=5.0) as srv:
        yield srv


@pytest.fixture
def expected_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The `expected_calls` of every `TeacherClient` made in the test, in order (it decides whether the client's
    HTTP runs in the helper process: `transport_process: auto`)."""
    from synth.client import TeacherClient

    seen: list[int] = []
    real = TeacherClient.__init__

    def spy(self, *args: Any, expected_calls: int = 0, **kwargs: Any) -> None:
        seen.append(expected_calls)
        real(self, *args, expected_calls=expected_calls, **kwargs)

    monkeypatch.setattr(TeacherClient, "__init__", spy)
    return seen


def make_ctx(work_dir: Path, url: str | list[str], model: str = "scripted", **options: Any) -> BuildContext:
    """A build context pointing the teacher steps at `url` (fast retries for tests)."""
    return BuildContext(recipe_name="test-cot", work_dir=work_dir,
                        options={"teacher_url": url, "teacher_model": model, **options})


@pytest.fixture
def teacher_ctx(tmp_path: Path, scripted_server: ScriptedServer) -> BuildContext:
    return make_ctx(tmp_path / "work", scripted_server.url)


def _read(fmt: str, path: Path, limit: int | None) -> pl.DataFrame:
    from curate.recipe import SourceSpec
    from curate.sources import read_source

    spec = SourceSpec(name=fmt, format=fmt, path=str(path))
    return read_source(spec, base_dir=path.parent, limit=limit).frame


@pytest.fixture(scope="session")
def medqa_rows(data_dir: Path) -> pl.DataFrame:
    """First 60 real MedQA training rows, canonical."""
    return _read("medqa", data_dir / "medqa" / "train_subset1030.json", 60)


@pytest.fixture(scope="session")
def pubmedqa_rows(data_dir: Path) -> pl.DataFrame:
    """First 20 real PubMedQA (PQA-L train) rows, canonical."""
    return _read("pubmedqa", data_dir / "pubmedqa" / "train.json", 20)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`transformers serve` of a tiny random Llama on 127.0.0.1 (started once per session).

    Yields {"url": base URL, "model": the model name the server is pinned to}.
    """
    from train.tiny import build_tiny_model

    exe = shutil.which("transformers") or str(Path(sys.executable).parent / "transformers")
    model_dir = Path(build_tiny_model(tmp_path_factory.mktemp("tiny-teacher") / "model"))
    port = _free_port()
    log = (tmp_path_factory.mktemp("tiny-serve") / "serve.log").open("wb")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    proc = subprocess.Popen(
        [exe, "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited with {proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not become ready in 90 s; see {log.name}")
            time.sleep(0.25)
        yield {"url": f"{url}/v1", "model": str(model_dir)}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
