"""decontaminate: planted benchmark questions are caught with the right benchmark and id; real data is kept."""

from __future__ import annotations

import csv
import json
import logging
import random
import shutil
from pathlib import Path

import polars as pl
import pytest
from fixtures_curation import run_step

from curate.errors import RecipeError
from curate.record import to_frame
from curate.steps import get_step

BENCH_ROWS = {"medqa_test": 1273, "medmcqa_dev": 4183, "medmcqa_test": 6150, "pubmedqa_test": 500,
              "mmlu_anatomy_test": 135, "mmlu_clinical_knowledge_test": 265, "mmlu_college_biology_test": 144,
              "mmlu_college_medicine_test": 173, "mmlu_medical_genetics_test": 100,
              "mmlu_professional_medicine_test": 272, "headqa_test": 2742}
PLANTED_SETS = {"medqa_test", "medmcqa_dev", "medmcqa_test", "pubmedqa_test", "mmlu_anatomy_test",
                "mmlu_professional_medicine_test", "mmlu_college_biology_test", "headqa_test"}


def _edit(question: str, options: list[str], rng: random.Random, how: str) -> tuple[str, list[str]]:
    """Light edits a scraper or a careless merge would make."""
    if how == "case_punct":
        question = question.upper().replace("?", " ?").replace(",", " ,")
    elif how == "lead_in":
        question = "Question: " + question
    elif how == "shuffle":
        options = options[:]
        rng.shuffle(options)
    elif how == "spacing":
        question = "  ".join(question.split()) + " "
        options = [o.rstrip(".") for o in options]
    return question, options


def _planted(data_dir: Path) -> list[dict]:
    """Rows copied from every benchmark file (read here from the raw files, not through our loaders)."""
    rng = random.Random(7)
    raw: list[tuple[str, str, str, list[str]]] = []  # benchmark, its id, question, options
    lines = (data_dir / "medqa/test.jsonl").read_text().splitlines()
    for i in (5, 400, 1200):
        r = json.loads(lines[i])
        raw.append(("medqa_test", str(i + 1), r["question"], [r["options"][k] for k in sorted(r["options"])]))
    dev = [json.loads(x) for x in (data_dir / "medmcqa/dev_first3683.json").read_text().splitlines()]
    dev += [json.loads(x) for x in (data_dir / "medmcqa/dev_last500.json").read_text().splitlines()]
    for i in (0, 1000, 3000, 4000):  # 4000: one of the last 500 dev rows
        raw.append(("medmcqa_dev", dev[i]["id"], dev[i]["question"], [dev[i][f"op{k}"] for k in "abcd"]))
    for f in ("anatomy_test.jsonl", "pharmacology_test.jsonl", "dental_test.jsonl"):
        r = json.loads((data_dir / "medmcqa/test" / f).read_text().splitlines()[3])
        raw.append(("medmcqa_test", r["id"], r["question"], [r[f"op{k}"] for k in "abcd"]))
    pub = json.loads((data_dir / "pubmedqa/test.json").read_text())
    for pmid in list(pub)[:3]:
        raw.append(("pubmedqa_test", pmid, pub[pmid]["QUESTION"], []))
    for f in ("anatomy_test.csv", "professional_medicine_test.csv", "college_biology_test.csv"):
        with open(data_dir / "mmlu_medical/test" / f, newline="") as fh:
            r = list(csv.reader(fh))[10]
        subject = f.removesuffix("_test.csv")
        raw.append((f"mmlu_{subject}_test", f"{subject}/11", r[0], r[1:5]))
    head = json.loads((data_dir / "headqa/test.json").read_text())
    for exam in list(head["exams"])[:3]:
        q = head["exams"][exam]["data"][20]
        raw.append(("headqa_test", f"{exam}/{q['qid']}", q["qtext"], [a["atext"] for a in q["answers"]]))
    hows = ["case_punct", "lead_in", "shuffle", "spacing"]
    rows = []
    for k, (bench, bid, question, options) in enumerate(raw):
        question, options = _edit(question, options, rng, hows[k % len(hows)])
        task = "yes_no_maybe" if not options else "mcq"
        opts = ([{"label": lab, "text": t} for lab, t in zip("ABCDE", options, strict=False)] if options
                else [{"label": x, "text": x} for x in ("yes", "no", "maybe")])
        rows.append({"source": "planted", "source_id": f"{bench}|{bid}", "task": task, "question": question,
                     "options": opts, "answer": opts[0]["label"]})
    return rows


@pytest.fixture(scope="module")
def contaminated(data_dir: Path, medqa_train: pl.DataFrame) -> pl.DataFrame:
    return pl.concat([medqa_train, to_frame(_planted(data_dir)).select(medqa_train.columns)])


def test_planted_benchmark_rows_are_rejected_with_benchmark_and_id(
    contaminated: pl.DataFrame, cur_ctx, monkeypatch
) -> None:
    """No root, no environment variable: the shipped pack is what the rows are checked against."""
    monkeypatch.delenv("MEDCURATE_BENCHMARKS", raising=False)
    res = run_step("decontaminate", contaminated, cur_ctx)
    planted = res.rejected.filter(pl.col("source") == "planted")
    assert planted.height == 19  # every planted row, from all six benchmarks (eight pack sets)
    for row in planted.iter_rows(named=True):
        bench, bid = row["source_id"].split("|")
        assert row["reason"] == "benchmark_overlap"
        assert row["detail"].startswith(f"{bench}:{bid} ("), row["detail"]
    table = res.stats["benchmarks"]
    assert {k: v["rows"] for k, v in table.items()} == BENCH_ROWS
    assert res.stats["missing"] == []
    for name, entry in table.items():
        assert entry["found"] and entry["checked"] == contaminated.height
        assert entry["where"] == f"pack:{name}.parquet"
        assert (entry["hits"] >= 1) == (name in PLANTED_SETS), name
        assert entry["hit_rate"] == pytest.approx(entry["hits"] / contaminated.height, abs=1e-6)
    scores = res.scores
    assert scores.height == contaminated.height
    assert set(scores.columns) == {"id", "bench_name", "bench_id", "bench_overlap"}


def test_real_medqa_train_is_kept_except_two_shared_vignettes(
    medqa_train: pl.DataFrame, data_dir: Path, cur_ctx
) -> None:
    """No train question text equals a test one, but two train rows reuse a test vignette nearly word for
    word (same case, another question): those are real contamination and are reported."""
    res = run_step("decontaminate", medqa_train, cur_ctx)
    assert res.kept.height == 1028
    stems = sorted(q[:40] for q in res.rejected["question"])
    assert stems == ["A medical research study is evaluating a", "A previously healthy 14-year-old boy is "]
    assert all(d.startswith("medqa_test:") for d in res.rejected["detail"])


def _option_words(options: list[dict]) -> set[str]:
    return {w.strip(".,;:()").lower() for o in options for w in o["text"].split()} - {""}


def test_generic_headqa_stems_with_other_options_are_not_contamination(
    headqa_train: pl.DataFrame, headqa_test: pl.DataFrame, data_dir: Path, cur_ctx
) -> None:
    """HEAD-QA repeats stems such as "The peptide bond:" across years; only a repeat that also carries the
    test options is contamination."""
    res = run_step("decontaminate", headqa_train, cur_ctx, root=str(data_dir), benchmarks=["headqa_test"])
    key = pl.col("question").str.to_lowercase().str.strip_chars()
    test_by_stem: dict[str, list[set[str]]] = {}
    for q, opts in headqa_test.select(key, "options").iter_rows():
        test_by_stem.setdefault(q, []).append(_option_words(opts))
    same_stem = headqa_train.with_columns(key.alias("k")).filter(pl.col("k").is_in(list(test_by_stem)))
    assert same_stem.height == 17
    kept_ids = set(res.kept["id"])
    other_options = same_repeat = 0
    for k, opts, rid in same_stem.select("k", "options", "id").iter_rows():
        words = _option_words(opts)
        best = max(len(words & t) / len(words | t) for t in test_by_stem[k])
        if best < 0.5:
            other_options += 1
            assert rid in kept_ids, k
        elif best > 0.8:
            same_repeat += 1
            assert rid not in kept_ids, k
    assert other_options >= 8 and same_repeat >= 5
    kept_stems = same_stem.filter(pl.col("id").is_in(kept_ids))["k"]
    assert kept_stems.str.split(" ").list.len().min() <= 5  # generic short stems are among the kept ones
    assert all(d.startswith("headqa_test:Cuaderno_201") for d in res.rejected["detail"])


def test_short_question_rule_matches_full_text_only(data_dir: Path, cur_ctx) -> None:
    pub = json.loads((data_dir / "pubmedqa/test.json").read_text())
    pmid, item = next((k, v) for k, v in pub.items() if len(v["QUESTION"].split()) < 13)
    yes_no = [{"label": x, "text": x} for x in ("yes", "no", "maybe")]
    words = item["QUESTION"].split()
    frame = to_frame([
        {"source": "t", "task": "yes_no_maybe", "question": item["QUESTION"].lower(), "context": "Other text.",
         "options": yes_no, "answer": "yes"},
        {"source": "t", "task": "yes_no_maybe", "question": " ".join(words[:-1]) + " in children?",
         "options": yes_no, "answer": "no"},
    ])
    res = run_step("decontaminate", frame, cur_ctx, root=str(data_dir), benchmarks=["pubmedqa_test"])
    assert res.rejected.height == 1
    assert res.rejected["detail"][0] == f"pubmedqa_test:{pmid} (contains its full text)"


def test_missing_benchmarks_are_listed_and_warned(data_dir: Path, tmp_path: Path, cur_ctx, caplog,
                                                  medqa_train: pl.DataFrame) -> None:
    root = tmp_path / "bench"
    (root / "medqa").mkdir(parents=True)
    shutil.copy(data_dir / "medqa/test.jsonl", root / "medqa/test.jsonl")
    res = run_step("decontaminate", medqa_train.head(50), cur_ctx, root=str(root))  # the root overrides
    assert res.stats["missing"] == [] and res.stats["benchmarks"]["medqa_test"]["where"] == str(root / "medqa/test.jsonl")
    assert res.stats["benchmarks"]["headqa_test"]["where"] == "pack:headqa_test.parquet"
    with caplog.at_level(logging.WARNING, logger="medcurate"):  # the pack off: only the root's set is found
        res = run_step("decontaminate", medqa_train.head(50), cur_ctx, root=str(root), pack=False)
    assert sorted(res.stats["missing"]) == sorted(set(BENCH_ROWS) - {"medqa_test"})
    assert res.stats["benchmarks"]["medqa_test"]["found"] is True
    assert res.stats["benchmarks"]["headqa_test"] == {
        "rows": 0, "checked": 0, "hits": 0, "hit_rate": 0.0, "found": False, "where": None,
        "note": f"no files matching headqa/test.json, headqa/test_HEAD_EN.json under {root}"}
    assert "10 benchmark(s) NOT FOUND" in caplog.text and "headqa_test" in caplog.text
    with pytest.raises(RecipeError, match="not found"):
        get_step("decontaminate")({"root": str(root), "strict": True, "pack": False}).apply(
            medqa_train.head(5), cur_ctx)


def test_env_root_and_per_benchmark_path(data_dir: Path, monkeypatch, cur_ctx, medqa_train) -> None:
    monkeypatch.setenv("MEDCURATE_BENCHMARKS", str(data_dir))
    res = run_step("decontaminate", medqa_train.head(20), cur_ctx, benchmarks=["mmlu_medical_test"])
    table = res.stats["benchmarks"]
    assert sum(b["rows"] for b in table.values()) == 1089 and len(table) == 6  # the group: six MMLU sets
    assert table["mmlu_anatomy_test"]["where"] == str(data_dir / "mmlu_medical/test/anatomy_test.csv")
    monkeypatch.delenv("MEDCURATE_BENCHMARKS")
    res = run_step("decontaminate", medqa_train.head(20), cur_ctx, benchmarks=["pubmedqa_test"],
                   paths={"pubmedqa_test": str(data_dir / "pubmedqa/test.json")})
    assert res.stats["benchmarks"]["pubmedqa_test"]["found"]
    res = run_step("decontaminate", medqa_train.head(20), cur_ctx, benchmarks=["pubmedqa_test"])
    assert res.stats["benchmarks"]["pubmedqa_test"]["where"] == "pack:pubmedqa_test.parquet"
    res = run_step("decontaminate", medqa_train.head(20), cur_ctx, benchmarks=["pubmedqa_test"], pack=False)
    assert res.stats["missing"] == ["pubmedqa_test"] and "MEDCURATE_BENCHMARKS" in (
        res.stats["benchmarks"]["pubmedqa_test"]["note"])


def test_extra_sets_are_checked_too(data_dir: Path, cur_ctx, medqa_train: pl.DataFrame) -> None:
    """A user's own benchmark file, read by its adapter, is checked beside the pack's sets."""
    extra = {"my_exam": {"format": "medqa", "path": str(data_dir / "medqa/train_subset1030.json")}}
    res = run_step("decontaminate", medqa_train.slice(200, 10), cur_ctx, benchmarks=["medqa_test"], extra=extra)
    assert res.rejected.height == 10 and all(d.startswith("my_exam:") for d in res.rejected["detail"])
    assert res.stats["benchmarks"]["my_exam"]["rows"] == 1030
    with pytest.raises(ValueError, match="built-in name"):
        get_step("decontaminate")({"extra": {"medqa_test": extra["my_exam"]}})


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown benchmark"):
        get_step("decontaminate")({"benchmarks": ["medqa_dev"]})
    with pytest.raises(ValueError):
        get_step("decontaminate")({"ngram": 1})


def test_index_is_cached_and_rebuilt_when_a_benchmark_file_changes(data_dir: Path, tmp_path: Path, cur_ctx,
                                                                    medqa_train: pl.DataFrame) -> None:
    root = tmp_path / "bench"
    (root / "medqa").mkdir(parents=True)
    test_file = root / "medqa/test.jsonl"
    shutil.copy(data_dir / "medqa/test.jsonl", test_file)
    rows = medqa_train.slice(100, 30)
    first = run_step("decontaminate", rows, cur_ctx, root=str(root), benchmarks=["medqa_test"])
    assert first.rejected.height == 0
    assert len(list((cur_ctx.work_dir / "decontaminate-index").iterdir())) == 1
    # a benchmark file that now contains one of these training questions: the index must be rebuilt
    r = rows.row(3, named=True)
    gold = next(o["text"] for o in r["options"] if o["label"] == r["answer"])
    planted = {"question": r["question"], "answer": gold, "answer_idx": r["answer"],
               "options": {o["label"]: o["text"] for o in r["options"]}, "meta_info": "step1"}
    with open(test_file, "a") as fh:
        fh.write(json.dumps(planted) + "\n")
    second = run_step("decontaminate", rows, cur_ctx, root=str(root), benchmarks=["medqa_test"])
    assert second.rejected["id"].to_list() == [r["id"]]
    assert second.rejected["detail"][0].startswith("medqa_test:1274 ")
    assert second.stats["benchmarks"]["medqa_test"]["rows"] == 1274
    assert len(list((cur_ctx.work_dir / "decontaminate-index").iterdir())) == 2


def test_a_benchmark_split_as_input_is_refused_plainly(cur_ctx) -> None:
    """Building from a benchmark's own test split says so instead of finishing with zero rows."""
    from curate.benchpack import read_pack_set

    test_split = read_pack_set("medqa_test").head(200)
    with pytest.raises(RecipeError, match=r"200 of 200 input rows \(100%\) are benchmark test items "
                                          r"\(medqa_test: 200\).*looks like a benchmark split"):
        run_step("decontaminate", test_split, cur_ctx, benchmarks=["medqa_test"])
    res = run_step("decontaminate", test_split, cur_ctx, benchmarks=["medqa_test"], max_hit_fraction=None)
    assert res.kept.height == 0 and res.rejected.height == 200
