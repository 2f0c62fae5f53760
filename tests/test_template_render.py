"""The columnar template renders exactly what the per-row `str.format` loop rendered, on real rows."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from curate.recipe import SourceSpec
from curate.sources import read_source
from curate.steps import BuildContext
from curate.steps.template import Template, choose, gold_text, render_options
from curate.templates import TEMPLATES


def _reference(frame: pl.DataFrame, seed: int, system: str | None, explanation: bool,
               table: dict[str, list[str]]) -> list[list[dict]]:
    """The per-row rendering the step did before it became columnar (kept here as the oracle)."""
    out = []
    for row in frame.iter_rows(named=True):
        key = "open_qa_context" if row["task"] == "open_qa" and row["context"] else row["task"]
        options = table.get(key) or table["open_qa"]
        user = options[choose(row["id"], seed, len(options))].format(
            question=row["question"] or "", options=render_options(row["options"]), context=row["context"] or "",
        ).strip()
        if row.get("cot"):
            assistant = row["cot"]
        else:
            assistant = gold_text(row)
            if explanation and row["explanation"] and row["task"] != "open_qa":
                assistant = f"{assistant}\n\n{row['explanation']}"
        out.append(([{"role": "system", "content": system}] if system else [])
                   + [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}])
    return out


@pytest.fixture(scope="module")
def rows(data_dir: Path) -> pl.DataFrame:
    specs = [("medqa", "medqa", "medqa/train_subset1030.json"), ("medmcqa", "medmcqa", "medmcqa/dev_first3683.json"),
             ("pubmedqa", "pubmedqa", "pubmedqa/train.json"), ("headqa", "headqa", "headqa/train.json")]
    frames = [read_source(SourceSpec(name=n, format=f, path=p), base_dir=data_dir).frame for n, f, p in specs]
    frame = pl.concat([f.select(frames[0].columns) for f in frames])
    # open-QA rows with and without context, and whitespace at the edges that str.strip() removes
    open_qa = frame.head(300).with_columns(
        pl.lit("open_qa").alias("task"), pl.lit(None, dtype=frame.schema["options"]).alias("options"),
        pl.when(pl.int_range(pl.len()) % 2 == 0).then(pl.lit("A short context.\u2003")).otherwise(pl.lit(""))
        .alias("context"), (pl.col("id") + "-o").alias("id"), ("\x1f " + pl.col("question") + "\n\u3000").alias("question"))
    return pl.concat([frame, open_qa])


@pytest.mark.parametrize(("system", "explanation", "cot"), [(None, True, False), ("You are a doctor.", False, True)])
def test_columnar_template_equals_the_row_loop(rows: pl.DataFrame, system, explanation, cot, tmp_path) -> None:
    frame = rows
    if cot:
        frame = frame.with_columns(pl.when(pl.int_range(pl.len()) % 3 == 0).then(pl.lit("Step by step: B."))
                                   .otherwise(None).alias("cot"))
    extra = {"mcq": ["{question!s}\n{options}"]}  # a conversion: this group falls back to str.format
    step = Template({"system_prompt": system, "include_explanation": explanation, "seed": 7,
                     "templates": extra if cot else {}})
    result = step.apply(frame, BuildContext(recipe_name="t", work_dir=tmp_path))
    expected = _reference(frame, 7, system, explanation, {**TEMPLATES, **(extra if cot else {})})
    assert result.kept["messages"].to_list() == expected
    assert sum(result.stats["templates_used"].values()) == frame.height
    assert {"mcq", "yes_no_maybe", "open_qa", "open_qa_context"} <= {k.split(":")[0] for k in result.stats["templates_used"]}
