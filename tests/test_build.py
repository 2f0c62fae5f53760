"""`curate build` end to end on real data: reconciliation, determinism, atomic output, clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from curate.build import find_build, run_build
from curate.card import parse_card_header
from curate.cli import app
from curate.errors import MedcurateError, RecipeError
from curate.recipe import validate_recipe

runner = CliRunner()


def _build(data_dir: Path, *args: str) -> Path:
    result = runner.invoke(
        app, ["build", "medqa-sft", "--source", f"medqa={data_dir}/medqa/train_subset1030.json", "-q", *args]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    return Path(result.stdout.strip().splitlines()[-1])


def test_acceptance_medqa_sft(data_dir: Path, work: Path, monkeypatch) -> None:
    monkeypatch.setenv("MEDCURATE_BENCHMARKS", str(data_dir))
    path = _build(data_dir)
    m = json.loads((path / "manifest.json").read_text())
    data = pl.read_parquet(path / "data")
    rejects = [pl.read_parquet(p) for p in sorted((path / "rejects").glob("*.parquet"))]
    n_rej = sum(r.height for r in rejects)
    # every input row is accounted for, per step and overall
    assert m["sources"][0]["rows"] == 1030 == m["rows_in"]
    assert m["rows_in"] == m["rows_out"] + m["rows_rejected"] == data.height + n_rej
    for step in m["steps"]:
        assert step["rows_in"] == step["rows_kept"] + step["rows_rejected"], step
        assert sum(step["reasons"].values()) == step["rows_rejected"]
    for r in rejects:
        assert {"step", "reason", "detail"} <= set(r.columns) and r["reason"].null_count() == 0
    # data rows carry TRL conversational messages
    msgs = data["messages"][0].to_list()
    assert [x["role"] for x in msgs][-2:] == ["user", "assistant"]
    assert data["id"].n_unique() == data.height
    assert m["sources"][0]["sha256"] and len(m["recipe"]["sha256"]) == 64
    assert find_build("medqa-sft") == path
    report = (path / "report.md").read_text()
    assert "## Funnel" in report and "## Decontamination (`decontaminate`)" in report
    # Two rows of this MedQA train subset re-use MedQA test cases nearly verbatim: rejected, naming the match.
    contaminated = pl.read_parquet(path / "rejects" / "decontaminate.parquet")
    assert contaminated.height == 2 and contaminated["detail"].str.starts_with("medqa_test:").all()
    card = (path / "README.md").read_text()
    header = parse_card_header(card)
    assert header["dataset_info"]["splits"][0]["num_examples"] == data.height
    assert f"| medqa_test | yes | 1273 | {data.height + 2} | 2 |" in card
    # a second run gives the same output content hash
    path2 = _build(data_dir)
    m2 = json.loads((path2 / "manifest.json").read_text())
    assert path2 != path and m2["output"]["sha256"] == m["output"]["sha256"]
    assert find_build("medqa-sft") == path2


def test_limit_and_out(data_dir: Path, work: Path) -> None:
    out = work / "small"
    path = _build(data_dir, "--limit", "25", "--out", str(out))
    assert path == out
    m = json.loads((out / "manifest.json").read_text())
    assert m["rows_in"] == 25 and m["limit"] == 25


def test_unknown_source_name_is_a_clear_error(data_dir: Path, work: Path) -> None:
    with pytest.raises(MedcurateError, match="not sources of recipe"):
        run_build("medqa-sft", source_overrides={"medmcqa": "x.json"})


def test_missing_source_file_names_the_source(work: Path) -> None:
    with pytest.raises(MedcurateError) as err:
        run_build("medqa-sft", source_overrides={"medqa": "nope/missing.jsonl"})
    assert "missing.jsonl" in str(err.value)


def test_recipe_errors_name_the_key_path() -> None:
    good = {"name": "x", "description": "d", "license": "mit",
            "sources": [{"name": "a", "format": "medqa", "path": "a.jsonl"}], "steps": [{"validate": {}}]}
    validate_recipe(good)
    with pytest.raises(RecipeError, match=r"sources\.0\.pathh: unknown key"):
        validate_recipe({**good, "sources": [{"name": "a", "format": "medqa", "pathh": "a.jsonl", "path": "a"}]})
    with pytest.raises(RecipeError, match=r"steps\.1\.template\.system_promt: unknown key"):
        validate_recipe({**good, "steps": [{"validate": {}}, {"template": {"system_promt": "x"}}]})
    with pytest.raises(RecipeError, match=r"steps\.0\.nosuchstep: unknown step"):
        validate_recipe({**good, "steps": [{"nosuchstep": {}}]})
    with pytest.raises(RecipeError, match="colour: unknown key"):
        validate_recipe({**good, "colour": "blue"})


def test_failing_step_leaves_no_build_folder(data_dir: Path, work: Path, monkeypatch) -> None:
    from curate.steps.template import Template

    def boom(self, frame, ctx):
        raise RuntimeError("killed mid-build")

    monkeypatch.setattr(Template, "apply", boom)
    with pytest.raises(RuntimeError):
        run_build("medqa-sft", source_overrides={"medqa": f"{data_dir}/medqa/train_subset1030.json"})
    base = work / "builds" / "medqa-sft"
    assert not (base / "LATEST").exists()
    assert [p.name for p in base.iterdir() if p.name != ".work"] == []


@pytest.mark.slow
def test_killed_build_process_leaves_nothing_complete(data_dir: Path, work: Path) -> None:
    """SIGKILL while writing: no folder with a manifest appears, and the next build cleans up and succeeds."""
    script = (
        "import time, sys\n"
        "import curate.build as b, curate.runner.write as w\n"
        "orig = w.write_shards\n"
        "def slow(*a, **k):\n"
        "    out = orig(*a, **k); print('WRITING', flush=True); time.sleep(30); return out\n"
        "w.write_shards = slow\n"
        f"b.run_build('medqa-sft', source_overrides={{'medqa': {str(data_dir / 'medqa/train_subset1030.json')!r}}})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=work, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "MEDCURATE_BUILDS": str(work / "builds")})
    deadline = time.time() + 120
    line = ""
    while time.time() < deadline and "WRITING" not in line:
        line = proc.stdout.readline()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    base = work / "builds" / "medqa-sft"
    assert not list(base.glob("*/manifest.json")) and not (base / "LATEST").exists()
    assert list(base.glob(".tmp-*"))  # the half-written folder is hidden...
    path = _build(data_dir)
    assert not list(base.glob(".tmp-*"))  # ...and swept by the next build
    assert (path / "manifest.json").is_file()
