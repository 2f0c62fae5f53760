"""normalize / validate / template on real rows."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import polars as pl
import pytest

from curate.recipe import SourceSpec
from curate.record import to_frame
from curate.sources import read_source
from curate.steps import BuildContext, get_step


@pytest.fixture
def ctx(tmp_path: Path) -> BuildContext:
    return BuildContext(recipe_name="test", work_dir=tmp_path, seed=0)


def _read(data_dir: Path, fmt: str, rel: str) -> pl.DataFrame:
    spec = SourceSpec(name=fmt, format=fmt, path=str(data_dir / rel))
    return read_source(spec, base_dir=data_dir).frame


@pytest.fixture(scope="module")
def medqa(data_dir: Path) -> pl.DataFrame:
    return _read(data_dir, "medqa", "medqa/train_subset1030.json")


def run(name: str, frame: pl.DataFrame, ctx: BuildContext, **params):
    result = get_step(name)(params).apply(frame, ctx)
    assert result.kept.height + result.rejected.height == frame.height
    return result


def test_normalize_cleans_text_and_keeps_every_row(data_dir: Path, ctx: BuildContext) -> None:
    frame = _read(data_dir, "medmcqa", "medmcqa/dev_first3683.json")
    dirty = frame.head(3).with_columns(
        pl.Series("question", [
            "Cafe\u0301  patient\u200b with\tfever, see https://example.org/x?y=1 now",
            "Write to doc.tor@example.com   about   the   rash",
            "Plain question?",
        ]),
        pl.Series("explanation", ["Ans. is 'a' i.e., Iron deficiency. Ref: Harrison 19th ed p 123", None, "Fine."]),
    )
    out = run("normalize", pl.concat([dirty, frame.slice(3)]), ctx)
    q = out.kept["question"].to_list()
    assert q[0] == unicodedata.normalize("NFC", "Café patient with fever, see now")
    assert q[1] == "Write to about the rash"
    assert out.kept["explanation"][0] == "Iron deficiency."
    assert out.rejected.height == 0
    assert out.stats["rows_changed"]["question"] >= 2
    # Real MedMCQA explanations carry "Ref:" trailers: normalization removes them.
    raw_refs = frame["explanation"].str.contains(r"(?i)\bref\s*:").sum()
    left = out.kept["explanation"].str.contains(r"(?i)\bref\s*:\s*[^()]*$").sum()
    assert raw_refs > 100 and left < raw_refs / 10


def test_validate_keeps_real_medqa_and_names_each_defect(medqa: pl.DataFrame, ctx: BuildContext) -> None:
    # the only rows that leave are the 47 whose stem shows a picture the data does not carry (issue 11)
    assert set(run("validate", medqa, ctx).rejected["reason"]) == {"needs_image"}
    base = medqa.head(6).to_dicts()
    base[0]["question"] = "   "
    base[1]["answer"] = "E"
    base[2]["options"] = [{"label": "A", "text": "x"}, {"label": "A", "text": "y"}]
    base[3]["options"] = [{"label": "A", "text": "only"}]
    base[3]["answer"] = "A"
    base[4]["options"] = [{"label": "A", "text": "same"}, {"label": "B", "text": "Same"}, {"label": "C", "text": "z"}]
    base[4]["answer"] = "C"
    bad = to_frame({**r, "id": None} for r in base)
    out = run("validate", bad, ctx)
    reasons = dict(zip(out.rejected["source_id"], out.rejected["reason"], strict=True))
    ids = [r["source_id"] for r in base]
    assert reasons == {
        ids[0]: "empty_question",
        ids[1]: "answer_not_in_options",
        ids[2]: "duplicate_option_labels",
        ids[3]: "too_few_options",
        ids[4]: "duplicate_option_text",
    }
    assert out.kept.height == 1
    assert "not among labels A,B,C,D" in out.rejected.filter(pl.col("reason") == "answer_not_in_options")["detail"][0]


def test_validate_rejects_headqa_image_questions(data_dir: Path, ctx: BuildContext) -> None:
    frame = _read(data_dir, "headqa", "headqa/train.json")
    raw = json.loads((data_dir / "headqa/train.json").read_text())
    with_image = sum(1 for e in raw["exams"].values() for q in e["data"] if q.get("image"))
    out = run("validate", frame, ctx)
    assert with_image == 68
    assert out.rejected.filter(pl.col("reason") == "needs_image").height == with_image


def test_template_is_deterministic_varied_and_trl_shaped(medqa: pl.DataFrame, ctx: BuildContext) -> None:
    a = run("template", medqa, ctx, system_prompt="You are a careful medical assistant.")
    b = run("template", medqa, ctx, system_prompt="You are a careful medical assistant.")
    assert a.kept["messages"].to_list() == b.kept["messages"].to_list()
    assert len(a.stats["templates_used"]) >= 8
    row = a.kept.row(0, named=True)
    roles = [m["role"] for m in row["messages"]]
    assert roles == ["system", "user", "assistant"]
    user, assistant = row["messages"][1]["content"], row["messages"][2]["content"]
    assert row["question"] in user
    for opt in row["options"]:
        assert f"{opt['label']}. {opt['text']}" in user
    gold = next(o["text"] for o in row["options"] if o["label"] == row["answer"])
    assert assistant.startswith(f"Answer: {row['answer']}. {gold}")
    other_seed = run("template", medqa, BuildContext(recipe_name="t", work_dir=ctx.work_dir, seed=1))
    assert other_seed.kept["messages"].to_list() != a.kept["messages"].to_list()


def test_template_uses_cot_and_context(data_dir: Path, ctx: BuildContext) -> None:
    pubmed = _read(data_dir, "pubmedqa", "pubmedqa/train.json").head(40)
    out = run("template", pubmed, ctx)
    used = {k.split(":")[0] for k in out.stats["templates_used"]}
    assert used == {"yes_no_maybe"} and len(out.stats["templates_used"]) >= 4
    first = out.kept.row(0, named=True)
    assert first["context"][:60] in first["messages"][0]["content"]
    assert first["messages"][1]["content"].startswith(f"Answer: {first['answer']}")
    with_cot = pubmed.with_columns(pl.lit("Reasoning... Answer: yes").alias("cot"))
    assert run("template", with_cot, ctx).kept["messages"][0][1]["content"] == "Reasoning... Answer: yes"


def test_normalize_cleans_chat_columns(ctx: BuildContext, tmp_path: Path) -> None:
    rows = [{"prompt": "What  is\u00a0the antidote for heparin? see www.example.org",
             "chosen": "Protamine   sulfate.", "rejected": "Vitamin K\u200b."}]
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(rows[0]) + "\n")
    frame = read_source(SourceSpec(name="p", format="preference", path=str(path)), base_dir=tmp_path).frame
    out = run("normalize", frame, ctx).kept.row(0, named=True)
    assert out["prompt"] == [{"role": "user", "content": "What is the antidote for heparin? see"}]
    assert out["chosen"][0]["content"] == "Protamine sulfate." and out["rejected"][0]["content"] == "Vitamin K."
    assert out["question"] == out["prompt"][0]["content"]
