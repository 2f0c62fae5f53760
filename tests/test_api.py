"""The Python API: recipes from dicts, in-memory sources, BuildOutput, run_step; the README example runs."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import datasets
import polars as pl
import pytest

import curate
from curate.errors import MedcurateError, RecipeError

ROOT = Path(__file__).resolve().parents[1]


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_example_runs(data_dir: Path, work: Path) -> None:
    (work / "data").symlink_to(data_dir)
    printed = io.StringIO()
    scope: dict = {}
    with contextlib.redirect_stdout(printed):
        exec(compile(_readme_example(), "README.md", "exec"), scope)  # noqa: S102 - the documented example
    out = scope["out"]
    assert out.rows_in == 1030 + 2
    assert out.manifest["sources"][0]["rows"] == 1030
    train = scope["train"]
    assert isinstance(train, datasets.Dataset) and len(train) == out.rows_kept
    assert train[0]["messages"][0]["role"] in ("system", "user")
    # the broken in-memory row left with the adapter's reason; the good one was kept
    why = out.explain(2, source="ours")
    assert [w["reason"] for w in why] == ["answer_not_in_options"]
    assert "scurvy" in " ".join(train["question"])
    assert isinstance(scope["near"].kept, datasets.Dataset)
    assert "BuildOutput('my-medqa'" in printed.getvalue()


def test_build_output_accounts_for_every_row(data_dir: Path, work: Path) -> None:
    recipe = {
        "name": "medqa-py", "description": "d", "license": "mit",
        "sources": [{"name": "medqa", "format": "medqa", "path": str(data_dir / "medqa/test.jsonl")}],
        "steps": ["normalize", "validate", {"dedup": {"threshold": 0.5}}],
    }
    out = curate.build(recipe, limit=300)
    assert out.rows_in == 300 == out.rows_kept + out.rows_rejected
    assert out.rejected.height == out.rows_rejected
    assert out.reasons()["rows"].sum() == out.rows_rejected
    assert 0.0 <= out.reject_ratio < 1.0
    assert out.path.parent.name == "medqa-py" and (out.path / "manifest.json").is_file()
    # an in-memory recipe has a stable content hash: the same dict gives the same recipe sha256
    again = curate.build(recipe, limit=300)
    assert again.manifest["recipe"]["sha256"] == out.manifest["recipe"]["sha256"]
    assert again.manifest["output"]["sha256"] == out.manifest["output"]["sha256"]


def test_dataset_source_and_run_step_on_frame(data_dir: Path, work: Path) -> None:
    rows = pl.read_ndjson(data_dir / "medqa/test.jsonl").head(50)
    ds = datasets.Dataset(rows.to_arrow())
    recipe = curate.Recipe.from_dict({
        "name": "ds-src", "description": "d", "license": "mit",
        "sources": [{"name": "medqa", "format": "medqa", "path": "unused.jsonl"}],
        "steps": ["normalize"],
    })
    out = curate.build(recipe, sources={"medqa": ds})
    assert out.rows_in == 50 and out.rows_kept == 50
    frame = out.dataset["train"].to_polars()
    doubled = pl.concat([frame, frame.with_columns(pl.col("id") + "x")])
    res = curate.run_step("dedup", doubled)
    assert isinstance(res.kept, pl.DataFrame)
    assert res.kept.height == 50 and res.rejected.height == 50
    assert set(res.rejected["reason"]) <= {"exact_duplicate", "near_duplicate"}


def test_api_errors_name_the_problem(work: Path) -> None:
    with pytest.raises(RecipeError, match=r"steps\.0\.dedup\.threshold"):
        curate.Recipe.from_dict({"name": "x", "description": "d", "license": "mit",
                                 "sources": [{"name": "s", "format": "generic", "path": "a.jsonl",
                                              "columns": {"question": "q", "answer": "a"}}],
                                 "steps": [{"dedup": {"threshold": 7}}]})
    with pytest.raises(MedcurateError, match="not sources of recipe"):
        curate.build({"name": "x", "description": "d", "license": "mit",
                      "sources": [{"name": "s", "format": "generic", "path": "a.jsonl",
                                   "columns": {"question": "q", "answer": "a"}}], "steps": []},
                     sources={"nope": pl.DataFrame({"q": ["?"]})})
    with pytest.raises(MedcurateError, match="unknown step"):
        curate.run_step("no-such-step", pl.DataFrame({"question": ["q"]}))
