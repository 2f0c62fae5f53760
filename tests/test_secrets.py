"""Promise 4: a teacher API key reaches the server and nothing else: no build file, cache, registry file or log."""

from __future__ import annotations

import logging
from pathlib import Path

from typer.testing import CliRunner

from curate import registry
from curate.cli import app
from curate.resources import recipes_dir

SECRET = "sk-live-medcurate-test-5f3a9c0e1d"


def test_api_key_never_written(data_dir: Path, work: Path, scripted_server, monkeypatch, caplog) -> None:
    monkeypatch.setenv("MEDCURATE_TEST_KEY", SECRET)
    recipe = (recipes_dir() / "medqa-cot.yaml").read_text()
    recipe = recipe.replace("teacher: vllm-local", "teacher: {profile: vllm-local, api_key_env: MEDCURATE_TEST_KEY}")
    assert "MEDCURATE_TEST_KEY" in recipe
    (work / "recipes").mkdir()
    (work / "recipes" / "medqa-cot.yaml").write_text(recipe)
    caplog.set_level(logging.DEBUG)
    result = CliRunner().invoke(app, [
        "build", "medqa-cot", "--source", f"medqa={data_dir}/medqa/train_subset1030.json", "--limit", "6",
        "--teacher-url", scripted_server.url, "--teacher-model", "scripted",
    ])
    assert result.exit_code == 0, result.output + repr(result.exception)
    registry.push("medqa-cot", "1.0.0", allow_partial=True)  # a --limit build
    # the key was sent...
    auth = {r["headers"].get("authorization") for r in scripted_server.log}
    assert auth == {f"Bearer {SECRET}"}
    # ...and written nowhere: build folder, teacher cache (sqlite), registry, console output, logs
    written = [p for p in work.rglob("*") if p.is_file()]
    assert any(p.suffix == ".sqlite" for p in written) and any(p.name == "manifest.json" for p in written)
    leaked = [str(p) for p in written if SECRET.encode() in p.read_bytes()]
    assert leaked == []
    assert SECRET not in result.output and SECRET not in caplog.text
