"""Multiple-choice files as found in the wild (issue 11, item 6, the source side): the real files in
../shared/data, rewritten here in the layouts converted copies use, must give the same questions and
gold answers as the original releases; a `--source` file's split is what the user states, else "unknown".
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from curate.cli import app
from curate.recipe import SourceSpec
from curate.sources import SourceData, read_source


def read(fmt: str, path: Path, **kw: Any) -> SourceData:
    data = read_source(SourceSpec(name=kw.pop("name", "s"), format=fmt, path=str(path), **kw), base_dir=path.parent)
    assert data.info["rows"] == data.frame.height + data.rejected.height
    return data


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def medqa_rows(data_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (data_dir / "medqa/test.jsonl").read_text().splitlines()]


def texts(row: dict) -> list[str]:
    return [o["text"] for o in row["options"]]


# ---------------------------------------------------------------- letter-prefixed option lists

@pytest.mark.parametrize("style,answer", [
    ("{k}. {v}", "text"),  # "A. Ampicillin", answer "Ampicillin"
    ("{k}) {v}", "prefixed"),  # "A) Ampicillin", answer "C) Nitrofurantoin"
    ("({k}) {v}", "letter"),  # "(A) Ampicillin", answer "C"
])
def test_medqa_options_as_a_prefixed_list(data_dir: Path, tmp_path: Path, style: str, answer: str) -> None:
    raw = medqa_rows(data_dir)
    rows = []
    for r in raw:
        gold = {"text": r["answer"], "letter": r["answer_idx"],
                "prefixed": style.format(k=r["answer_idx"], v=r["answer"])}[answer]
        rows.append({"question": r["question"], "options": [style.format(k=k, v=v) for k, v in r["options"].items()],
                     "answer": gold})
    d = read("medqa", jsonl(tmp_path / "wild.jsonl", rows))
    assert d.frame.height == 1273 and d.rejected.height == 0
    assert d.frame["answer"].to_list() == [r["answer_idx"] for r in raw]
    assert [texts(r) for r in d.frame.to_dicts()] == [list(r["options"].values()) for r in raw]
    # the same content as the original file: the same ids
    assert d.frame["id"].to_list() == read("medqa", data_dir / "medqa/test.jsonl").frame["id"].to_list()


def test_prefixed_answer_must_agree_with_the_gold_letter(data_dir: Path, tmp_path: Path) -> None:
    raw = medqa_rows(data_dir)[:40]
    rows = [dict(r, answer=f"{r['answer_idx']}. {r['answer']}") for r in raw]  # answer_idx + "B. text": agree
    wrong = dict(raw[0], answer_idx="A" if raw[0]["answer_idx"] != "A" else "B",
                 answer=f"{raw[0]['answer_idx']}. {raw[0]['answer']}")
    d = read("medqa", jsonl(tmp_path / "a.jsonl", [*rows, wrong]))
    assert d.frame["answer"].to_list() == [r["answer_idx"] for r in raw]
    assert d.rejected["reason"].to_list() == ["answer_text_mismatch"]


def test_generic_list_options_with_prefixes_and_text_answers(data_dir: Path, tmp_path: Path) -> None:
    raw = medqa_rows(data_dir)
    rows = [{"q": r["question"], "choices": [f"{k}. {v}" for k, v in r["options"].items()],
             "gold": f"{r['answer_idx']}. {r['answer']}"} for r in raw]
    cols = {"question": "q", "options": "choices", "answer": "gold", "answer_format": "text"}
    d = read("generic", jsonl(tmp_path / "g.jsonl", rows), columns=cols)
    assert d.frame["answer"].to_list() == [r["answer_idx"] for r in raw] and d.rejected.height == 0
    ref = read("medqa", data_dir / "medqa/test.jsonl")
    assert d.frame["id"].to_list() == ref.frame["id"].to_list()  # same content, same ids
    # Option texts that only look prefixed ("E. coli") are kept whole.
    d = read("generic", jsonl(tmp_path / "e.jsonl", [{"q": "Which organism?", "choices": ["E. coli", "S. aureus"],
                                                      "gold": "E. coli"}]), columns=cols)
    assert texts(d.frame.row(0, named=True)) == ["E. coli", "S. aureus"] and d.frame["answer"][0] == "A"


# ---------------------------------------------------------------- MMLU, Hugging Face layout

def _mmlu(data_dir: Path) -> list[list[str]]:
    with (data_dir / "mmlu_medical/test/anatomy_test.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.mark.parametrize("layout", ["choice_columns", "letter_columns", "choices_json", "choices_numpy", "jsonl"])
def test_mmlu_in_the_hugging_face_layout(data_dir: Path, tmp_path: Path, layout: str) -> None:
    raw = _mmlu(data_dir)
    idx = ["ABCD".index(r[5]) for r in raw]
    folder = tmp_path / layout
    folder.mkdir()
    if layout == "choice_columns":
        f = _write_csv(folder / "anatomy_test.csv", ["question", "choice0", "choice1", "choice2", "choice3", "answer"],
                       [[r[0], *r[1:5], i] for r, i in zip(raw, idx, strict=True)])
    elif layout == "letter_columns":
        f = _write_csv(folder / "anatomy_test.csv", ["question", "A", "B", "C", "D", "answer"], raw)
    elif layout == "choices_json":
        f = _write_csv(folder / "anatomy_test.csv", ["question", "subject", "choices", "answer"],
                       [[r[0], "anatomy", json.dumps(r[1:5]), i] for r, i in zip(raw, idx, strict=True)])
    elif layout == "choices_numpy":  # what pandas writes for a datasets export: numpy's array repr
        f = _write_csv(folder / "anatomy_test.csv", ["question", "subject", "choices", "answer"],
                       [[r[0], "anatomy", "[" + " ".join(repr(c) for c in r[1:5]) + "]", i]
                        for r, i in zip(raw, idx, strict=True)])
    else:
        f = jsonl(folder / "anatomy_test.jsonl", [{"question": r[0], "subject": "anatomy", "choices": r[1:5],
                                                  "answer": i} for r, i in zip(raw, idx, strict=True)])
    d = read("mmlu", f)
    assert d.frame.height == 135 and d.rejected.height == 0  # the header is not a row
    assert d.frame["question"].to_list() == [r[0] for r in raw]
    assert d.frame["answer"].to_list() == [r[5] for r in raw]
    assert [texts(r) for r in d.frame.to_dicts()] == [r[1:5] for r in raw]
    assert set(d.frame["subject"]) == {"anatomy"} and set(d.frame["source_split"]) == {"test"}
    ref = read("mmlu", data_dir / "mmlu_medical/test/anatomy_test.csv")
    assert d.frame["id"].to_list() == ref.frame["id"].to_list()


# ---------------------------------------------------------------- PubMedQA converted layouts

def _pubmedqa(data_dir: Path) -> dict[str, dict]:
    return json.loads((data_dir / "pubmedqa/train.json").read_text())


@pytest.mark.parametrize("layout", ["hub_jsonl", "context_answer_jsonl", "passage_array", "bigbio_jsonl"])
def test_pubmedqa_converted_layouts(data_dir: Path, tmp_path: Path, layout: str) -> None:
    src = _pubmedqa(data_dir)
    if layout == "hub_jsonl":
        rows = [{"pubid": int(k), "question": v["QUESTION"], "long_answer": v["LONG_ANSWER"],
                 "final_decision": v["final_decision"],
                 "context": {"contexts": v["CONTEXTS"], "labels": v["LABELS"], "meshes": v["MESHES"]}}
                for k, v in src.items()]
        f = jsonl(tmp_path / "pqa.jsonl", rows)
    elif layout == "context_answer_jsonl":
        rows = [{"id": k, "question": v["QUESTION"], "context": " ".join(v["CONTEXTS"]), "answer": v["final_decision"]}
                for k, v in src.items()]
        f = jsonl(tmp_path / "pqa.jsonl", rows)
    elif layout == "passage_array":
        rows = [{"pmid": k, "question": v["QUESTION"], "passage": v["CONTEXTS"], "final_decision": v["final_decision"].upper()}
                for k, v in src.items()]
        f = tmp_path / "pqa.json"
        f.write_text(json.dumps(rows), encoding="utf-8")
    else:
        rows = [{"id": k, "question": v["QUESTION"], "context": v["CONTEXTS"], "answer": [v["final_decision"]]}
                for k, v in src.items()]
        f = jsonl(tmp_path / "pqa.jsonl", rows)
    d = read("pubmedqa", f)
    assert d.frame.height == 500 and d.rejected.height == 0
    assert d.frame["source_id"].to_list() == list(src)
    assert d.frame["answer"].to_list() == [v["final_decision"] for v in src.values()]
    assert d.frame["question"].to_list() == [v["QUESTION"] for v in src.values()]
    if layout == "hub_jsonl":  # the same content as the original file: the same ids
        ref = read("pubmedqa", data_dir / "pubmedqa/train.json")
        assert d.frame["id"].to_list() == ref.frame["id"].to_list()


# ---------------------------------------------------------------- provenance of a --source file

def test_source_override_split_is_stated_or_unknown(data_dir: Path, tmp_path: Path) -> None:
    spec = SourceSpec(name="medqa", format="medqa", hub="GBaker/MedQA-USMLE-4-options@main", split="train")
    f = data_dir / "medqa/test.jsonl"
    d = read_source(spec, base_dir=tmp_path, path_override=f, limit=20)
    assert set(d.frame["source_split"]) == {"unknown"} and d.info["split"] == "unknown"
    assert d.info["override"] == str(f)
    d = read_source(spec, base_dir=tmp_path, path_override=f, limit=20, split_override="test")
    assert set(d.frame["source_split"]) == {"test"} and d.info["split"] == "test"
    # MMLU knows a file's split from its name (`_test.csv`) when the user states none.
    mmlu = SourceSpec(name="mmlu", format="mmlu", hub="cais/mmlu@main", split="auxiliary_train")
    d = read_source(mmlu, base_dir=tmp_path, path_override=data_dir / "mmlu_medical/test/anatomy_test.csv")
    assert set(d.frame["source_split"]) == {"test"}


def test_build_card_never_claims_train_for_an_unknown_file(data_dir: Path, work: Path) -> None:
    runner = CliRunner()  # a file the tool knows nothing about (MedQA train rows; a test split would be refused)
    rows = json.loads((data_dir / "medqa/train_subset1030.json").read_text())
    path = str(jsonl(work / "questions.jsonl", rows))
    res = runner.invoke(app, ["build", "medqa-sft", "--source", f"medqa={path}", "--limit", "30", "-q",
                              "--out", str(work / "a")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    m = json.loads((work / "a" / "manifest.json").read_text())
    assert m["sources"][0]["split"] == "unknown" and m["sources"][0]["override"] == path
    card = (work / "a" / "README.md").read_text()
    assert "| medqa | medqa | questions.jsonl | unknown |" in card and str(work) not in card
    assert set(pl.read_parquet(work / "a" / "data")["source_split"]) == {"unknown"}
    res = runner.invoke(app, ["build", "medqa-sft", "--source", f"medqa={path}", "--source-split", "medqa=test",
                              "--limit", "30", "-q", "--out", str(work / "b")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "| medqa | medqa | questions.jsonl | test |" in (work / "b" / "README.md").read_text()


def test_source_split_needs_its_source_file(work: Path) -> None:
    from curate.build import run_build
    from curate.errors import MedcurateError

    with pytest.raises(MedcurateError, match="have no --source NAME=PATH"):
        run_build("medqa-sft", source_splits={"medqa": "test"})
    res = CliRunner().invoke(app, ["build", "medqa-sft", "--source-split", "medqa", "-q"])
    assert res.exit_code != 0 and "NAME=SPLIT" in res.output + repr(res.exception)
