"""Source adapters on the real public files in ../shared/data, the Hub layouts and bad input."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from curate.errors import InputError, RecipeError, SourceUnavailable
from curate.recipe import SourceSpec, load_recipe
from curate.record import SCHEMA, record_id
from curate.resources import recipes_dir
from curate.sources import Adapter, Reject, SourceData, adapter_names, read_source, register_adapter

LETTERS = "ABCDE"


def read(fmt: str, path: str | Path, base: Path, **kw: Any) -> SourceData:
    limit = kw.pop("limit", None)
    data = read_source(SourceSpec(name=kw.pop("name", fmt), format=fmt, path=str(path), **kw),
                       base_dir=base, limit=limit)
    assert data.info["rows"] == data.frame.height + data.rejected.height
    assert list(data.frame.columns[: len(SCHEMA)]) == list(SCHEMA)
    assert data.frame["id"].null_count() == 0
    assert list(data.rejected.columns) == ["source", "source_row", "raw", "reason", "detail"]
    return data


def labels_of(row: dict) -> list[str]:
    return [o["label"] for o in row["options"]]


def gold_text(row: dict) -> str:
    return next(o["text"] for o in row["options"] if o["label"] == row["answer"])


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


def jl(*rows: Any) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


MEDQA_ROW = {"question": "Q1?", "answer": "two", "options": {"A": "one", "B": "two", "C": "three", "D": "four"},
             "meta_info": "step1", "answer_idx": "B"}


# ---------------------------------------------------------------- real files: one test per adapter

def test_medqa_jsonl_test_split(data_dir: Path) -> None:
    raw = [json.loads(line) for line in (data_dir / "medqa/test.jsonl").read_text().splitlines()]
    d = read("medqa", "medqa/test.jsonl", data_dir, split="test")
    assert d.info["rows"] == 1273 == d.frame.height and d.rejected.height == 0
    assert d.info["sha256"] == hashlib.sha256((data_dir / "medqa/test.jsonl").read_bytes()).hexdigest()
    rows = d.frame.to_dicts()
    for r, src in zip(rows, raw, strict=True):
        assert r["question"] == src["question"]
        assert r["answer"] == src["answer_idx"] and gold_text(r) == src["answer"]
        assert labels_of(r) == list(src["options"])
    assert rows[0]["answer"] == "B" and rows[0]["subject"] == "step1" and rows[0]["task"] == "mcq"
    assert set(d.frame["source_split"]) == {"test"} and d.frame["source_id"].n_unique() == 1273
    assert Counter(d.frame["subject"]) == Counter(r["meta_info"] for r in raw)


def test_medqa_json_array_subset(data_dir: Path) -> None:
    raw = json.loads((data_dir / "medqa/train_subset1030.json").read_text())
    d = read("medqa", "medqa/train_subset1030.json", data_dir)
    assert d.info["rows"] == 1030 == d.frame.height
    assert d.frame["answer"].to_list() == [r["answer_idx"] for r in raw]
    assert Counter(d.frame["subject"]) == {"step1": 589, "step2&3": 441}
    first = d.frame.row(0, named=True)
    assert first["question"].startswith("A 62-year-old man") and gold_text(first) == "1.1 mg/dL"


def test_medmcqa_dev(data_dir: Path) -> None:
    raw = [json.loads(line) for line in (data_dir / "medmcqa/dev_first3683.json").read_text().splitlines()]
    d = read("medmcqa", "medmcqa/dev_first3683.json", data_dir)
    assert d.frame.height == 3683 and d.rejected.height == 0
    assert d.frame["answer"].to_list() == [LETTERS[r["cop"] - 1] for r in raw]
    assert Counter(d.frame["answer"]) == {"A": 1177, "B": 973, "C": 805, "D": 728}
    assert d.frame["source_id"].to_list() == [r["id"] for r in raw]
    assert d.frame["explanation"].null_count() == sum(1 for r in raw if not (r["exp"] or "").strip())
    first = d.frame.row(0, named=True)
    assert first["subject"] == "Physiology" and gold_text(first).startswith("Impulse through myelinated")


def test_medmcqa_unlabelled_test_folder_is_rejected(data_dir: Path) -> None:
    d = read("medmcqa", "medmcqa/test", data_dir)
    assert d.frame.height == 0 and d.rejected.height == 6150 == d.info["rows"]
    assert set(d.rejected["reason"]) == {"unlabelled"}
    assert len(d.info["files"]) == 20
    # multi-file sources name the file in the detail; source_row runs over the whole source
    assert d.rejected["source_row"].to_list() == list(range(1, 6151))
    assert d.rejected["detail"][0].startswith("anaesthesia_test.jsonl line 1:")


def test_pubmedqa_dict_by_pmid(data_dir: Path) -> None:
    raw = json.loads((data_dir / "pubmedqa/train.json").read_text())
    d = read("pubmedqa", "pubmedqa/train.json", data_dir)
    assert d.frame.height == 500 and d.rejected.height == 0
    assert d.frame["source_id"].to_list() == list(raw)
    assert Counter(d.frame["answer"]) == {"yes": 276, "no": 169, "maybe": 55}
    assert set(d.frame["task"]) == {"yes_no_maybe"}
    r = d.frame.row(0, named=True)
    src = raw[r["source_id"]]
    assert r["question"] == src["QUESTION"] and r["explanation"] == src["LONG_ANSWER"]
    assert r["context"].split("\n") == [f"{lab}: {c}" for lab, c in zip(src["LABELS"], src["CONTEXTS"], strict=True)]
    assert labels_of(r) == ["yes", "no", "maybe"] and r["answer"] in labels_of(r)


def test_pubmedqa_test_with_ground_truth(data_dir: Path, tmp_path: Path) -> None:
    truth = json.loads((data_dir / "pubmedqa/test_ground_truth.json").read_text())
    d = read("pubmedqa", "pubmedqa/test.json", data_dir, split="test")
    assert d.frame.height == 500 and d.rejected.height == 0
    assert dict(zip(d.frame["source_id"], d.frame["answer"], strict=True)) == truth
    # the whole folder: train + test (= ori_pqal.json), the ground-truth file is read with test.json
    both = read("pubmedqa", "pubmedqa", data_dir)
    assert both.frame.height == 1000 == both.frame["source_id"].n_unique() and both.rejected.height == 0
    # the released test set has no labels of its own: they come from the sibling ground-truth file
    entries = json.loads((data_dir / "pubmedqa/test.json").read_text())
    stripped = {k: {f: v for f, v in e.items() if f != "final_decision"} for k, e in list(entries.items())[:20]}
    write(tmp_path / "test_set.json", json.dumps(stripped))
    write(tmp_path / "test_ground_truth.json", json.dumps(truth))
    d2 = read("pubmedqa", tmp_path / "test_set.json", tmp_path)
    assert d2.frame.height == 20 and d2.frame["answer"].to_list() == [truth[k] for k in stripped]
    # a label that disagrees with the ground truth is a reject, not a silent pick
    first = next(iter(stripped))
    flipped = {k: dict(v, final_decision=("no" if truth[k] != "no" else "yes")) if k == first else v
               for k, v in stripped.items()}
    write(tmp_path / "test_set.json", json.dumps(flipped))
    d3 = read("pubmedqa", tmp_path / "test_set.json", tmp_path)
    assert d3.rejected["reason"].to_list() == ["label_conflict"] and d3.frame.height == 19


def test_headqa_train_and_test(data_dir: Path) -> None:
    doc = json.loads((data_dir / "headqa/train.json").read_text())
    raw = [(name, q) for name, e in doc["exams"].items() for q in e["data"]]
    d = read("headqa", "headqa/train.json", data_dir)
    assert d.frame.height == 2657 and d.rejected.height == 0
    assert d.frame["image"].is_not_null().sum() == 68 == sum(1 for _, q in raw if q["image"])
    assert d.frame["source_id"].to_list() == [f"{n}/{q['qid']}" for n, q in raw]
    assert d.frame["answer"].to_list() == [LETTERS[int(q["ra"]) - 1] for _, q in raw]
    assert set(d.frame["subject"]) == {"biology", "nursery", "pharmacology", "medicine", "psychology", "chemistry"}
    assert d.frame["options"].list.len().unique().to_list() == [5]
    first = d.frame.row(0, named=True)
    assert first["question"] == "The excitatory postsynaptic potentials:" and gold_text(first) == "They can be added."
    t = read("headqa", "headqa/test.json", data_dir, split="test")
    assert t.frame.height == 2742 and t.frame["image"].is_not_null().sum() == 67
    assert t.frame["options"].list.len().unique().to_list() == [4]


def test_mmlu_folder_glob_and_crlf(data_dir: Path) -> None:
    folder = data_dir / "mmlu_medical/test"
    expected = {"anatomy": 135, "clinical_knowledge": 265, "college_biology": 144, "college_medicine": 173,
                "medical_genetics": 100, "professional_medicine": 272}
    d = read("mmlu", "mmlu_medical/test", data_dir)
    assert d.frame.height == 1089 and d.rejected.height == 0
    assert dict(Counter(d.frame["subject"])) == expected
    assert set(d.frame["source_split"]) == {"test"}  # from the file names: the recipe did not set a split
    with (folder / "clinical_knowledge_test.csv").open(newline="", encoding="utf-8") as fh:
        raw = list(csv.reader(fh))  # a CRLF file
    ck = d.frame.filter(pl.col("subject") == "clinical_knowledge")
    assert ck["answer"].to_list() == [r[5] for r in raw]
    assert ck["question"].to_list() == [r[0] for r in raw]
    assert not any(q.endswith("\r") for q in d.frame["question"])
    g = read("mmlu", "mmlu_medical/test/*_test.csv", data_dir, split="eval")
    assert g.frame.height == 1089 and set(g.frame["source_split"]) == {"eval"}
    assert g.info["sha256"] == d.info["sha256"]


def test_limit_and_path_override(data_dir: Path, work: Path) -> None:
    spec = SourceSpec(name="medqa", format="medqa", path="does/not/exist.jsonl")
    rel = Path("data.jsonl")
    write(work / rel, (data_dir / "medqa/test.jsonl").read_text())
    d = read_source(spec, base_dir=data_dir, limit=25, path_override=rel)  # relative to the cwd
    assert d.info["rows"] == 25 == d.frame.height
    assert d.info["uri"] == str((work / rel).resolve())
    with pytest.raises(SourceUnavailable, match="does/not/exist.jsonl"):
        read_source(spec, base_dir=data_dir)


# ---------------------------------------------------------------- generic adapter, cross-checked

def test_generic_matches_dedicated_adapters(data_dir: Path, tmp_path: Path) -> None:
    medmcqa = read("medmcqa", "medmcqa/dev_first3683.json", data_dir)
    cols = {"question": "question", "options": ["opa", "opb", "opc", "opd"], "answer": "cop",
            "answer_format": "index1", "explanation": "exp", "subject": "subject_name", "id": "id"}
    g = read("generic", "medmcqa/dev_first3683.json", data_dir, name="medmcqa", columns=cols)
    assert g.frame.equals(medmcqa.frame)
    # parquet and CSV exports of the same rows, answer as a 0-based index
    raw = pl.read_ndjson(data_dir / "medmcqa/dev_first3683.json", infer_schema_length=None)
    raw = raw.with_columns((pl.col("cop") - 1).alias("cop0"))
    raw.write_parquet(tmp_path / "mm.parquet")
    raw.drop("exp", "topic_name").write_csv(tmp_path / "mm.csv")
    cols0 = {**cols, "answer": "cop0", "answer_format": "index0"}
    p = read("generic", tmp_path / "mm.parquet", tmp_path, name="medmcqa", columns=cols0)
    assert p.frame["answer"].equals(medmcqa.frame["answer"]) and p.frame["id"].equals(medmcqa.frame["id"])
    c = read("generic", tmp_path / "mm.csv", tmp_path, name="medmcqa",
             columns={k: v for k, v in cols0.items() if k != "explanation"})
    assert c.frame["answer"].equals(medmcqa.frame["answer"])
    # MedQA with the answer given as option text, options as one dict column
    medqa = read("medqa", "medqa/test.jsonl", data_dir)
    t = read("generic", "medqa/test.jsonl", data_dir, name="medqa",
             columns={"question": "question", "options": "options", "answer": "answer", "answer_format": "text"})
    assert t.frame["answer"].equals(medqa.frame["answer"]) and t.frame["id"].equals(medqa.frame["id"])


def test_generic_option_shapes_and_tasks(tmp_path: Path) -> None:
    rows = [
        {"q": "Q1", "choices": ["x", "y", "z"], "a": "y"},
        {"q": "Q2", "choices": [{"label": "A", "text": "x"}, {"label": "B", "text": "y"}], "a": "Y"},
        {"q": "Q3", "choices": {"A": "x", "B": "y"}, "a": "nowhere"},
    ]
    write(tmp_path / "a.json", json.dumps({"data": rows}))
    d = read("generic", tmp_path / "a.json", tmp_path,
             columns={"question": "q", "options": "choices", "answer": "a", "answer_format": "text"})
    assert d.frame["answer"].to_list() == ["B", "B"]
    assert d.rejected["reason"].to_list() == ["answer_not_in_options"] and d.rejected["source_row"].to_list() == [3]
    write(tmp_path / "o.jsonl", jl({"q": "What is X?", "a": "An answer.", "ctx": ["p1", "p2"]}))
    o = read("generic", tmp_path / "o.jsonl", tmp_path, columns={"question": "q", "answer": "a", "context": "ctx"})
    assert o.frame.row(0, named=True) | {"id": None} == {
        "id": None, "source": "generic", "source_id": "1", "source_split": "train", "task": "open_qa",
        "question": "What is X?", "context": "p1\np2", "options": [], "answer": "An answer.",
        "explanation": None, "subject": None}
    write(tmp_path / "y.jsonl", jl({"q": "Is X?", "a": "Yes"}, {"q": "Is Y?", "a": "perhaps"}))
    y = read("generic", tmp_path / "y.jsonl", tmp_path, columns={"question": "q", "answer": "a", "task": "yes_no_maybe"})
    assert y.frame["answer"].to_list() == ["yes"] and labels_of(y.frame.row(0, named=True)) == ["yes", "no", "maybe"]
    assert y.rejected["reason"].to_list() == ["answer_not_in_options"]


# ---------------------------------------------------------------- Hub layouts (load_dataset mocked)

@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch):
    """Make `datasets.load_dataset` return an in-memory Dataset and record the call."""
    import datasets

    calls: list[tuple] = []

    def install(rows: list[dict]) -> list[tuple]:
        def load_dataset(path, name=None, *, revision=None, split=None, **_):
            calls.append((path, name, revision, split))
            return datasets.Dataset.from_list(rows)
        monkeypatch.setattr(datasets, "load_dataset", load_dataset)
        return calls
    return install


def hub(fmt: str, repo: str, **kw: Any) -> SourceData:
    data = read_source(SourceSpec(name=fmt, format=fmt, hub=repo, **kw), base_dir=Path.cwd())
    assert data.info["rows"] == data.frame.height + data.rejected.height
    return data


def test_hub_medqa_layouts(data_dir: Path, fake_hub) -> None:
    raw = [json.loads(line) for line in (data_dir / "medqa/test.jsonl").read_text().splitlines()[:50]]
    ref = read("medqa", "medqa/test.jsonl", data_dir, limit=50)
    calls = fake_hub(raw)  # GBaker/MedQA-USMLE-4-options: the original fields
    d = hub("medqa", "GBaker/MedQA-USMLE-4-options@abc123", split="test")
    assert calls == [("GBaker/MedQA-USMLE-4-options", None, "abc123", "test")]
    assert d.frame["id"].equals(ref.frame["id"]) and d.info["revision"] == "abc123"
    assert d.info["uri"] == "hf://datasets/GBaker/MedQA-USMLE-4-options"
    mc = [{"id": i, "sent1": r["question"], "sent2": "", **{f"ending{j}": v for j, v in enumerate(r["options"].values())},
           "label": "ABCD".index(r["answer_idx"])} for i, r in enumerate(raw)]
    fake_hub(mc)  # GBaker/MedQA-USMLE-4-options-hf: multiple-choice layout
    d2 = hub("medqa", "GBaker/MedQA-USMLE-4-options-hf@main")
    assert d2.frame["id"].equals(ref.frame["id"])
    bigbio = [{"question": r["question"], "answer": r["answer"], "answer_idx": r["answer_idx"], "meta_info": r["meta_info"],
               "options": [{"key": k, "value": v} for k, v in r["options"].items()]} for r in raw]
    fake_hub(bigbio)  # bigbio med_qa source schema
    assert hub("medqa", "bigbio/med_qa@main", config="med_qa_en_source").frame["id"].equals(ref.frame["id"])


def test_hub_medmcqa_pubmedqa_headqa_mmlu(data_dir: Path, fake_hub) -> None:
    raw = [json.loads(line) for line in (data_dir / "medmcqa/dev_first3683.json").read_text().splitlines()[:40]]
    fake_hub([dict(r, cop=r["cop"] - 1) for r in raw])  # the Hub's ClassLabel counts from 0
    d = hub("medmcqa", "openlifescienceai/medmcqa@main", split="validation")
    assert d.frame["answer"].to_list() == [LETTERS[r["cop"] - 1] for r in raw]

    pq = json.loads((data_dir / "pubmedqa/train.json").read_text())
    rows = [{"pubid": int(k), "question": v["QUESTION"], "long_answer": v["LONG_ANSWER"],
             "final_decision": v["final_decision"],
             "context": {"contexts": v["CONTEXTS"], "labels": v["LABELS"], "meshes": v["MESHES"]}}
            for k, v in list(pq.items())[:30]]
    fake_hub(rows)
    p = hub("pubmedqa", "qiaojin/PubMedQA@main", config="pqa_labeled")
    ref = read("pubmedqa", "pubmedqa/train.json", data_dir, limit=30)
    assert p.frame["id"].equals(ref.frame["id"]) and p.frame["source_id"].equals(ref.frame["source_id"])

    doc = json.loads((data_dir / "headqa/train.json").read_text())
    flat = [{"name": n, "category": e["category"], "year": e["year"], "qid": int(q["qid"]), "qtext": q["qtext"],
             "ra": int(q["ra"]), "image": None, "answers": q["answers"]}
            for n, e in doc["exams"].items() for q in e["data"][:5]]
    fake_hub(flat)
    h = hub("headqa", "dvilares/head_qa@main", config="en")
    assert h.frame.height == len(flat) and h.frame["image"].null_count() == len(flat)
    assert h.frame["answer"].to_list() == [LETTERS[r["ra"] - 1] for r in flat]

    with (data_dir / "mmlu_medical/test/anatomy_test.csv").open(newline="", encoding="utf-8") as fh:
        mm = list(csv.reader(fh))[:20]
    fake_hub([{"question": r[0], "subject": "anatomy", "choices": r[1:5], "answer": "ABCD".index(r[5])} for r in mm])
    m = hub("mmlu", "cais/mmlu@main", config="anatomy", split="test")
    assert m.frame["answer"].to_list() == [r[5] for r in mm] and set(m.frame["source_split"]) == {"test"}


def test_hub_unavailable_offline_says_how_to_use_a_file() -> None:
    spec = SourceSpec(name="medqa", format="medqa", hub="medcurate-tests/no-such-dataset@v0")
    with pytest.raises(SourceUnavailable) as err:
        read_source(spec, base_dir=Path.cwd())
    msg = str(err.value)
    assert "source 'medqa'" in msg and "medcurate-tests/no-such-dataset@v0" in msg
    assert "--source medqa=PATH" in msg and "path:" in msg


# ---------------------------------------------------------------- bad input

def test_malformed_json_line_and_missing_field(tmp_path: Path) -> None:
    bad = '{"question": "Q2?", "options": {"A": "x"'
    no_q = {k: v for k, v in MEDQA_ROW.items() if k != "question"}
    f = write(tmp_path / "m.jsonl", jl(MEDQA_ROW, bad, "", no_q, dict(MEDQA_ROW, question="Q3?")))
    d = read("medqa", f, tmp_path)
    assert d.info["rows"] == 4 and d.frame.height == 2  # the blank line is not a row
    rej = d.rejected.to_dicts()
    assert [r["reason"] for r in rej] == ["malformed_json", "missing_field"]
    assert rej[0]["source_row"] == 2 and rej[0]["raw"] == bad and rej[0]["detail"].startswith("line 2:")
    assert "'question'" in rej[1]["detail"] and rej[1]["source_row"] == 3


def test_field_missing_everywhere_is_an_error(tmp_path: Path) -> None:
    f = write(tmp_path / "m.jsonl", jl({"question": "Q?", "opa": "x"}, {"question": "R?", "opa": "y"}))
    with pytest.raises(InputError) as err:
        read("medqa", f, tmp_path)
    assert err.value.field == "options" and "all 2 rows" in str(err.value) and str(f) in str(err.value)


def test_answer_not_in_options_and_text_mismatch(tmp_path: Path) -> None:
    f = write(tmp_path / "m.jsonl", jl(MEDQA_ROW, dict(MEDQA_ROW, answer_idx="E"), dict(MEDQA_ROW, answer="three")))
    d = read("medqa", f, tmp_path)
    assert d.rejected["reason"].to_list() == ["answer_not_in_options", "answer_text_mismatch"]
    assert "'E'" in d.rejected["detail"][0] and "A, B, C, D" in d.rejected["detail"][0]
    m = write(tmp_path / "mm.jsonl", jl({"id": "1", "question": "Q", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 5}))
    assert read("medmcqa", m, tmp_path).rejected["reason"].to_list() == ["answer_not_in_options"]


def test_invalid_utf8(tmp_path: Path) -> None:
    good = json.dumps(MEDQA_ROW).encode()
    f = write(tmp_path / "m.jsonl", good + b"\n" + good.replace(b"Q1?", b"Caf\xe9?") + b"\n" + good + b"\n")
    d = read("medqa", f, tmp_path)
    assert d.frame.height == 2 and d.rejected["reason"].to_list() == ["invalid_utf8"]
    assert d.rejected["source_row"][0] == 2 and "0xe9" in d.rejected["detail"][0] and "\\xe9" in d.rejected["raw"][0]
    c = write(tmp_path / "x_test.csv", b"Q1,a,b,c,d,A\nQ\xff2,a,b,c,d,B\nQ3,a,b,c,d,C\n")
    dc = read("mmlu", c, tmp_path)
    assert dc.frame.height == 2 and dc.rejected["reason"].to_list() == ["invalid_utf8"]
    for fmt, name, body in [("medqa", "a.json", b'[{"question": "Caf\xe9"}]'),
                            ("pubmedqa", "p.json", b'{\n "1": {"QUESTION": "Caf\xe9"}}'),
                            ("headqa", "h.json", b'{"exams": {}, "x": "\xff"}')]:
        with pytest.raises(InputError, match="not valid UTF-8") as err:
            read(fmt, write(tmp_path / name, body), tmp_path)
        assert err.value.file == str(tmp_path / name) and err.value.row is not None and "byte offset" in str(err.value)


@pytest.mark.parametrize("fmt,name", [("medqa", "e.jsonl"), ("medqa", "e.json"), ("mmlu", "e_test.csv"),
                                      ("pubmedqa", "e.json"), ("headqa", "e.json"), ("generic", "e.parquet")])
def test_empty_file(tmp_path: Path, fmt: str, name: str) -> None:
    f = write(tmp_path / name, b"  \n\n")
    kw = {"columns": {"question": "q", "answer": "a"}} if fmt == "generic" else {}
    with pytest.raises(InputError, match="file is empty") as err:
        read(fmt, f, tmp_path, **kw)
    assert err.value.file == str(f) and err.value.hint


def test_missing_file_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="file not found") as err:
        read("medqa", "nope/train.jsonl", tmp_path)
    assert "--source medqa=PATH" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .*csv files"):
        read("mmlu", "empty", tmp_path)
    with pytest.raises(SourceUnavailable, match="no file matches"):
        read("mmlu", "empty/*_test.csv", tmp_path)


def test_unexpected_structure_is_a_reject(tmp_path: Path) -> None:
    entry = {"QUESTION": "Q?", "CONTEXTS": ["c"], "final_decision": "yes"}
    f = write(tmp_path / "pq.json", json.dumps({"1": entry, "2": dict(entry, CONTEXTS=5), "3": "oops",
                                                "4": dict(entry, final_decision="unsure")}))
    d = read("pubmedqa", f, tmp_path)
    assert d.frame["source_id"].to_list() == ["1"]
    assert d.rejected["reason"].to_list() == ["malformed_row", "malformed_row", "answer_not_in_options"]
    assert json.loads(d.rejected["raw"][1]) == "oops"
    h = write(tmp_path / "h.json", json.dumps({"exams": {"E1": {"name": "E1", "category": "biology", "data": [
        {"qid": "1", "qtext": "Q", "ra": "2", "answers": [{"aid": 1, "atext": "a"}, {"aid": 2, "atext": "b"}]},
        {"qid": "2", "qtext": "Q", "ra": "2", "answers": "a, b"},
        {"qid": "1", "qtext": "R", "ra": "1", "answers": [{"aid": 1, "atext": "a"}, {"aid": 2, "atext": "b"}]}]}}}))
    dh = read("headqa", h, tmp_path)
    assert dh.frame["answer"].to_list() == ["B"] and dh.frame["source_id"].to_list() == ["E1/1"]
    assert dh.rejected["reason"].to_list() == ["malformed_row", "duplicate_source_id"]


def test_invalid_whole_json(tmp_path: Path) -> None:
    # A bad element of a JSON array is one reject naming its line (the array is read element by
    # element); the elements after it are still read.
    f = write(tmp_path / "a.json", '[\n  {"question": "Q"},\n  {"question": }, \n' + json.dumps(MEDQA_ROW) + "\n]")
    d = read("medqa", f, tmp_path)
    assert d.frame.height == 1 and d.rejected["reason"].to_list() == ["missing_field", "malformed_json"]
    assert d.rejected["detail"][1].startswith("line 3:") and d.rejected["raw"][1] == '{"question": }'
    # A document whose structure is broken (here: cut short) is an error naming the line.
    cut = write(tmp_path / "b.json", '[\n  {"question": "Q"},\n  {"question": "R"}\n')
    with pytest.raises(InputError, match="not valid JSON") as err:
        read("medqa", cut, tmp_path)
    assert err.value.row == 4


def test_duplicate_source_ids(data_dir: Path, tmp_path: Path) -> None:
    lines = (data_dir / "medmcqa/dev_first3683.json").read_text().splitlines()[:5]
    f = write(tmp_path / "dev.json", "\n".join([*lines, lines[1]]) + "\n")
    d = read("medmcqa", f, tmp_path)
    assert d.frame.height == 5 and d.rejected["reason"].to_list() == ["duplicate_source_id"]
    assert d.rejected["source_row"][0] == 6 and "row 2" in d.rejected["detail"][0]
    entry = json.dumps({"QUESTION": "Q?", "CONTEXTS": ["c"], "final_decision": "yes"})
    p = write(tmp_path / "pq.json", f'{{"11": {entry}, "12": {entry}, "11": {entry}}}')
    dp = read("pubmedqa", p, tmp_path)
    assert dp.frame["source_id"].to_list() == ["11", "12"]
    assert dp.rejected["reason"].to_list() == ["duplicate_source_id"] and "row 1" in dp.rejected["detail"][0]


def test_medmcqa_counting_is_explicit(data_dir: Path, tmp_path: Path) -> None:
    raw = [json.loads(line) for line in (data_dir / "medmcqa/dev_first3683.json").read_text().splitlines()[:30]]
    f = write(tmp_path / "export.jsonl", jl(*[dict(r, cop=r["cop"] - 1) for r in raw]))  # a Hub export, 0-3
    with pytest.raises(InputError, match="medmcqa-hf") as err:
        read("medmcqa", f, tmp_path)
    assert err.value.field == "cop"
    d = read("medmcqa-hf", f, tmp_path)
    assert d.frame["answer"].to_list() == [LETTERS[r["cop"] - 1] for r in raw]


def test_csv_field_count_and_generic_column_check(tmp_path: Path) -> None:
    f = write(tmp_path / "s_test.csv", "Q1,a,b,c,d,A\nQ2,a,b,c,B\nQ3,a,b,c,d,Z\n")
    d = read("mmlu", f, tmp_path)
    assert d.rejected["reason"].to_list() == ["malformed_csv", "answer_not_in_options"]
    assert "line 2" in d.rejected["detail"][0] and "got 5" in d.rejected["detail"][0]
    g = write(tmp_path / "g.csv", "stem,a,b,key\nQ,x,y,A\n")
    with pytest.raises(InputError, match="'question' not found; columns are: stem, a, b, key"):
        read("generic", g, tmp_path, columns={"question": "question", "options": ["a", "b"], "answer": "key"})
    j = write(tmp_path / "g.jsonl", jl({"stem": "Q", "a": "x", "b": "y", "key": "A"}))
    with pytest.raises(InputError, match="'expl'.* none of the 1 rows"):
        read("generic", j, tmp_path, columns={"question": "stem", "options": ["a", "b"], "answer": "key",
                                              "explanation": "expl"})


def test_unknown_format_and_registry_is_one_file(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="unknown source format 'nope'"):
        read_source(SourceSpec(name="x", format="nope", path="x.jsonl"), base_dir=tmp_path)
    assert {"medqa", "medmcqa", "medmcqa-hf", "pubmedqa", "headqa", "mmlu", "generic"} <= set(adapter_names())

    @register_adapter
    class Shout(Adapter):
        name = "test-shout"

        def convert(self, obj: Any) -> dict[str, Any]:
            if not obj.get("q"):
                raise Reject("missing_field", "no q", field="q")
            return {"task": "open_qa", "question": obj["q"].upper(), "answer": obj["a"]}

    f = write(tmp_path / "s.jsonl", jl({"q": "hi", "a": "x"}, {"q": "", "a": "y"}))
    d = read("test-shout", f, tmp_path)
    assert d.frame["question"].to_list() == ["HI"] and d.rejected["reason"].to_list() == ["missing_field"]
    assert "test-shout" in adapter_names()


# ---------------------------------------------------------------- demo data and shipped recipes

def test_demo_recipe_sources() -> None:
    recipe, path, _ = load_recipe("demo")
    mcq, ynm = (read_source(s, base_dir=path.parent) for s in recipe.sources)
    for d in (mcq, ynm):
        assert d.info["rows"] == d.frame.height + d.rejected.height
    assert mcq.info["rows"] == 49 and ynm.info["rows"] == 9
    reasons = dict(zip(mcq.rejected["reason"], mcq.rejected["detail"], strict=True))
    assert set(reasons) == {"answer_not_in_options", "missing_field", "malformed_json"}
    assert ynm.rejected["reason"].to_list() == ["answer_not_in_options"]
    good = mcq.frame.filter(pl.col("source_id").str.starts_with("demo-mcq-"))
    assert good.height == 42 and ynm.frame.height == 8
    assert good["subject"].n_unique() >= 15 and set(ynm.frame["answer"]) == {"yes", "no", "maybe"}
    assert all(r["answer"] in labels_of(r) and len(r["options"]) == 4 for r in good.to_dicts())
    assert good["question"].n_unique() == 42
    # every parseable row says it is demo data
    for f in ("demo_mcq.jsonl", "demo_yes_no_maybe.jsonl"):
        for line in (recipes_dir() / "data" / f).read_text().splitlines():
            if line.endswith("}"):
                assert json.loads(line)["origin"] == "medcurate-demo"
    # the exact copy has the same content id as the row it copies (the build's ingest rejects it)
    ids = dict(zip(mcq.frame["source_id"], mcq.frame["id"], strict=True))
    assert ids["demo-bad-exact-copy"] == ids["demo-mcq-010"]
    assert ids["demo-bad-near-copy"] != ids["demo-mcq-003"]


@pytest.mark.parametrize("name", ["medqa-sft", "medmcqa-sft", "pubmedqa-sft", "headqa-sft", "mmlu-medical-eval"])
def test_shipped_recipes(name: str) -> None:
    recipe, _, _ = load_recipe(name)
    assert recipe.license == "mit" and recipe.pretty_name and recipe.description
    assert [s.name for s in recipe.steps][:2] == ["normalize", "validate"] and recipe.steps[-1].name == "template"
    for s in recipe.sources:
        assert s.format in adapter_names() and s.path is None
        assert s.hub and "@" in s.hub and s.license == "mit"


def test_record_ids_are_content_hashes(data_dir: Path) -> None:
    d = read("medqa", "medqa/train_subset1030.json", data_dir, limit=5)
    for r in d.frame.to_dicts():
        assert r["id"] == record_id(r["question"], r["options"], r["answer"], r["context"])


def test_unlabelled_benchmark_rows_are_kept_on_request(data_dir: Path) -> None:
    """Read for decontamination, the MedMCQA test split keeps its 6,150 unlabelled questions (answer null)."""
    spec = SourceSpec(name="mm", format="medmcqa", path=str(data_dir / "medmcqa" / "test"))
    data = read_source(spec, base_dir=data_dir, allow_unlabelled=True)
    assert (data.frame.height, data.rejected.height) == (6150, 0)
    assert data.frame["answer"].null_count() == 6150
    assert data.frame["options"].list.len().min() == 4


def test_unreachable_hub_fails_fast_with_the_fix(tmp_path: Path, monkeypatch) -> None:
    """No network and no local file: a clear error naming the source and how to point it at a file,
    at once (not after `datasets`' retries). The endpoint is a closed loopback port: nothing leaves the machine."""
    import socket
    import time

    import huggingface_hub.constants

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    spec = SourceSpec(name="medqa", format="medqa", hub="GBaker/MedQA-USMLE-4-options@main")
    t0 = time.perf_counter()
    with pytest.raises(SourceUnavailable) as err:
        read_source(spec, base_dir=tmp_path)
    assert time.perf_counter() - t0 < 5
    msg = str(err.value)
    assert "source 'medqa'" in msg and "unreachable" in msg and "--source medqa=PATH" in msg
