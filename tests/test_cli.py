"""The `curate` CLI for scripts: --version, -h, --json on every data command, untruncated piped tables,
plain progress lines when stderr is a log."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from curate import __version__
from curate.cli import app

runner = CliRunner()


def _ok(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def _json(*args: str):
    return json.loads(_ok(*args, "--json").stdout)


def _curate(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curate.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300, check=False)


def test_version_and_short_help(work: Path) -> None:
    assert _ok("--version").stdout.strip() == f"medcurate {__version__}"
    assert "Usage" in _ok("-h").stdout and "--json" in _ok("versions", "-h").stdout


@pytest.fixture
def two_versions(data_dir: Path, work: Path) -> dict:
    """medqa-sft built from the MedQA train subset (v1.0.0) and its first 700 rows (v1.1.0, partial), pushed to
    the local registry. (MedQA test would be refused: decontamination stops a build that is a benchmark split.)"""
    builds = []
    for version, limit in (("1.0.0", []), ("1.1.0", ["--limit", "700"])):
        b = _json("build", "medqa-sft", "--source", f"medqa={data_dir / 'medqa/train_subset1030.json'}", *limit, "-q")
        pushed = _json("push", "medqa-sft", version, "--build", b["build_id"], *(["--allow-partial"] if limit else []))
        builds.append((b, pushed))
    return {"builds": builds}


def test_json_outputs_parse_for_every_command(two_versions: dict, work: Path) -> None:
    (b1, p1), (b2, p2) = two_versions["builds"]
    assert b1["rows_in"] == 1030 == b1["rows_out"] + b1["rows_rejected"]
    assert b1["manifest"]["build_id"] == b1["build_id"] and Path(b1["path"]).is_dir()
    assert p1["tag"] == "v1.0.0" and re.fullmatch(r"[0-9a-f]{40}", p1["commit"])
    versions = _json("versions", "medqa-sft")
    assert [v["tag"] for v in versions] == ["v1.0.0", "v1.1.0"]
    assert versions[1]["commit"] == p2["commit"] and versions[0]["rows"] == b1["rows_out"]
    pulled = _json("pull", "medqa-sft@v1.0.0", "--out", str(work / "pulled"))
    assert pulled["commit"] == p1["commit"] and "manifest.json" in pulled["files"]
    diff = _json("diff", "medqa-sft", "v1.0.0", "v1.1.0")
    split = diff["splits"][0]
    assert split["rows_old"] == b1["rows_out"] and split["rows_new"] == b2["rows_out"]
    assert len(split["added"]) + len(split["changed"]) + split["unchanged"] == b2["rows_out"]
    assert len(split["removed"]) + len(split["changed"]) + split["unchanged"] == b1["rows_out"]
    recipes = _json("recipes")
    assert "medqa-sft" in {r["name"] for r in recipes}
    steps = {s["name"]: s for s in _json("steps")}
    dedup = {p["name"]: p for p in steps["dedup"]["params"]}
    assert dedup["threshold"]["default"] == 0.5 and "Jaccard" in dedup["threshold"]["description"]


def test_piped_versions_show_full_ids(two_versions: dict, work: Path) -> None:
    proc = _curate("versions", "medqa-sft", cwd=work)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "…" not in out
    for _, pushed in two_versions["builds"]:
        assert pushed["commit"] in out  # all 40 hex digits
    for v in _json("versions", "medqa-sft"):
        assert v["created"] in out and v["recipe_sha256"] in out


def test_steps_table_shows_params_defaults_and_descriptions(work: Path) -> None:
    out = _ok("steps", "dedup").stdout
    assert re.search(r"threshold\s+│\s+float\s+│\s+0\.5\s+│\s+Jaccard similarity", out), out


def test_progress_lines_when_stderr_is_not_a_terminal(data_dir: Path, work: Path) -> None:
    proc = _curate("build", "medqa-sft", "--source", f"medqa={data_dir / 'medqa/train_subset1030.json'}",
                   cwd=work, MEDCURATE_PROGRESS_EVERY="0")
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    for stage in ("source medqa", "step normalize", "step dedup", "step template"):
        assert re.search(rf"^\d\d:\d\d:\d\d {stage}: started", err, re.M), err
    assert re.search(r"^\d\d:\d\d:\d\d step dedup: done [\d,]+/[\d,]+ rows \(100%\)", err, re.M), err
    assert "\x1b[" not in err  # no terminal control codes in a log
    assert proc.stdout.strip().endswith(Path(proc.stdout.strip()).name)  # stdout: only the build path


def test_shell_completion_completes_commands(work: Path, monkeypatch) -> None:
    import shellingham

    # `--show-completion` detects the shell from the parent processes; a run detached from any shell
    # (nohup, some CI runners) has none, so the shell is named here
    monkeypatch.setattr(shellingham, "detect_shell", lambda *a, **k: ("bash", "/bin/bash"))
    script = Path(sys.executable).with_name("curate")
    if not script.is_file():
        pytest.skip("the `curate` console script is not installed in this environment")
    env = {**os.environ, "_CURATE_COMPLETE": "complete_bash", "COMP_WORDS": "curate ver", "COMP_CWORD": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([str(script)], capture_output=True, text=True, env=env, cwd=work, timeout=120, check=False)
    assert proc.returncode == 0 and proc.stdout.split() == ["versions"], proc.stdout + proc.stderr
    assert "complete -o default -F" in _ok("--show-completion", "bash").stdout


def test_verbosity_flags_set_log_levels(work: Path) -> None:
    import logging

    log = logging.getLogger("medcurate")
    try:
        _ok("-v", "recipes")
        assert log.getEffectiveLevel() == logging.INFO
        _ok("-q", "recipes")
        assert log.getEffectiveLevel() == logging.ERROR
        _ok("recipes")
        assert log.level == logging.NOTSET  # back to inheriting the root level
    finally:
        log.setLevel(logging.NOTSET)
