"""Hostile source files (issue 10, the source-layer items): each case is a reject with a reason or a
clear `InputError`, never a traceback, and `rows == kept + rejected` always holds.

Every test here failed on the code before the fix (checked with PYTHONPATH=/work/main).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate.errors import MedcurateError
from curate.recipe import SourceSpec
from curate.sources import RawRow, SourceData, read_source, register_adapter
from curate.sources.medqa import MedQA

ROW = {"question": "Q1?", "answer": "two", "options": {"A": "one", "B": "two", "C": "three", "D": "four"},
       "meta_info": "step1", "answer_idx": "B"}
OPEN_QA = {"question": "q", "answer": "a", "task": "open_qa"}


def read(fmt: str, path: Path, **kw: Any) -> SourceData:
    data = read_source(SourceSpec(name=kw.pop("name", "s"), format=fmt, path=str(path), **kw), base_dir=path.parent)
    assert data.info["rows"] == data.frame.height + data.rejected.height
    return data


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def jl(*rows: Any) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def reasons(d: SourceData) -> list[str]:
    return d.rejected["reason"].to_list()


# ---------------------------------------------------------------- JSON: surrogates, nesting, NaN

def test_lone_surrogate_escape_is_a_reject(tmp_path: Path) -> None:
    # json.dumps writes "\ud800" as the escape \ud800: valid JSON syntax, but not text (polars, parquet
    # and UTF-8 cannot hold it). A pair (\ud83d\ude00, an emoji) is fine.
    lines = write(tmp_path / "a.jsonl", jl(dict(ROW, question="bad \ud800 x"), dict(ROW, question="ok \U0001F600")))
    d = read("medqa", lines)
    assert d.frame["question"].to_list() == ["ok \U0001F600"]
    assert reasons(d) == ["invalid_utf8"] and d.rejected["detail"][0].startswith("line 1:")
    array = write(tmp_path / "a.json", "[" + ",\n".join(json.dumps(dict(ROW, question=q)) for q in ("x \udfff", "y")) + "]")
    d = read("medqa", array)
    assert d.frame["question"].to_list() == ["y"] and reasons(d) == ["invalid_utf8"]


def test_json_document_cut_inside_a_utf8_character_is_a_clear_error(tmp_path: Path) -> None:
    """Found by the fuzz test: a JSON array whose last bytes are half of a 2-byte character raised an
    IndexError inside the UTF-8 error handler; now it is an InputError naming the byte."""
    from curate.errors import InputError

    path = tmp_path / "cut.json"
    path.write_bytes(b'[{"question": "x\xc2')
    with pytest.raises(InputError, match=r"not valid UTF-8: byte 0xc2 at byte offset 16"):
        read("medqa", path)


def test_deeply_nested_json_is_a_reject(tmp_path: Path) -> None:
    deep = '{"question": ' + "[" * 100_000 + "]" * 100_000 + "}"
    d = read("medqa", write(tmp_path / "a.jsonl", jl(deep, ROW)))
    assert d.frame.height == 1 and reasons(d) == ["malformed_json"]
    assert "nested too deeply" in d.rejected["detail"][0] and d.rejected["detail"][0].startswith("line 1:")
    # In a JSON array the nested element is skipped (iteratively) and the next one is read.
    d = read("medqa", write(tmp_path / "a.json", f"[{deep},\n{json.dumps(ROW)}]"))
    assert d.frame.height == 1 and reasons(d) == ["malformed_json"]
    assert len(d.rejected["raw"][0]) < 5000  # the raw text kept for the reject is clipped


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_json_nan_and_infinity_are_rejected_never_the_text_nan(tmp_path: Path, token: str) -> None:
    cols = {"columns": OPEN_QA}
    d = read("generic", write(tmp_path / "a.jsonl", f'{{"q": "What?", "a": {token}}}\n{{"q": "Why?", "a": "because"}}\n'), **cols)
    assert d.frame["answer"].to_list() == ["because"] and reasons(d) == ["invalid_number"]
    d = read("generic", write(tmp_path / "a.json", f'[{{"q": "What?", "a": {token}}}, {{"q": "Why?", "a": "so"}}]'), **cols)
    assert d.frame["answer"].to_list() == ["so"] and reasons(d) == ["invalid_number"]
    assert "nan" not in d.frame["answer"].to_list() + d.frame["question"].to_list()


# ---------------------------------------------------------------- CSV: an unbalanced quote

def test_csv_unbalanced_quote_rejects_its_line_and_keeps_the_rows_after_it(tmp_path: Path) -> None:
    text = 'question,answer\nQ1,yes\n"Q2 opens a quote,no\nQ3,yes\nQ4,"a ""quoted"" answer\nover two lines"\nQ5,no\n'
    d = read("generic", write(tmp_path / "a.csv", text), columns={"question": "question", "answer": "answer",
                                                                  "task": "open_qa"})
    assert d.frame["question"].to_list() == ["Q1", "Q3", "Q4", "Q5"]
    assert d.frame["answer"][2] == 'a "quoted" answer\nover two lines'  # a real multi-line field is kept
    assert reasons(d) == ["malformed_csv"] and d.rejected["detail"][0].startswith("line 3: unbalanced quote")
    assert d.rejected["raw"][0] == '"Q2 opens a quote,no'


def test_mmlu_csv_unbalanced_quote_names_the_right_line(data_dir: Path, tmp_path: Path) -> None:
    lines = (data_dir / "mmlu_medical/test/anatomy_test.csv").read_bytes().splitlines(keepends=True)
    bad = b'"An unclosed quote,A,B,C,D,A\n'
    f = write(tmp_path / "anatomy_test.csv", b"".join([*lines[:10], bad, *lines[10:]]))
    d = read("mmlu", f)
    assert d.frame.height == 135 and reasons(d) == ["malformed_csv"]  # every real row is still read
    assert d.rejected["detail"][0].startswith("line 11:")


# ---------------------------------------------------------------- globs, hashes

def test_glob_through_a_symlink_loop_reads_each_file_once(data_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    write(root / "medqa" / "test.jsonl", (data_dir / "medqa/test.jsonl").read_bytes())
    os.symlink(root, root / "medqa" / "loop")  # medqa/loop -> data: data/medqa/loop/medqa/loop/...
    d = read_source(SourceSpec(name="m", format="medqa", path="data/**/*.jsonl"), base_dir=tmp_path)
    assert d.info["rows"] == 1273 == d.frame.height
    assert d.info["uri"] == str((root / "medqa" / "test.jsonl").resolve())


@register_adapter
class _GrowingMedQA(MedQA):
    """MedQA whose file gets a row appended just before it is read (a file written during a build)."""

    name = "test-growing-medqa"

    def read_file(self, path: Path) -> Iterator[RawRow]:
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(dict(ROW, question="appended")) + "\n")
        return super().read_file(path)


def test_sha256_is_of_the_bytes_read(data_dir: Path, tmp_path: Path) -> None:
    f = write(tmp_path / "a.jsonl", (data_dir / "medqa/test.jsonl").read_bytes())
    d = read("test-growing-medqa", f)
    assert d.info["rows"] == 1274 and d.frame["question"][-1] == "appended"
    assert d.info["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()  # what was read, appended row included


def test_file_appended_while_streaming_is_hashed_as_read(data_dir: Path, tmp_path: Path) -> None:
    from curate.sources import open_source

    rows = (data_dir / "medqa/test.jsonl").read_bytes()
    f = write(tmp_path / "a.jsonl", rows * 2)  # 2.5 MiB: more than one 1 MiB read
    stream = open_source(SourceSpec(name="m", format="medqa", path=str(f)), base_dir=tmp_path, batch_rows=100)
    batches = iter(stream)
    next(batches)
    with f.open("ab") as fh:
        fh.write(rows[: rows.index(b"\n") + 1])
    n = 100 + sum(b.frame.height + b.rejected.height for b in batches)
    assert n == stream.info["rows"] == 2547
    assert stream.info["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()


# ---------------------------------------------------------------- max_row_bytes

def test_rows_above_max_row_bytes_are_rejected_at_the_source(tmp_path: Path) -> None:
    big = dict(ROW, question="Q " + "x" * 2_000_000)
    f = write(tmp_path / "a.jsonl", jl(ROW | {"question": "small"}, big))
    d = read("medqa", f)
    assert d.frame["question"].to_list() == ["small"] and reasons(d) == ["row_too_large"]
    assert "max_row_bytes 1,000,000" in d.rejected["detail"][0] and len(d.rejected["raw"][0]) < 5000
    d = read("medqa", write(tmp_path / "a.json", json.dumps([ROW | {"question": "small"}, big])))
    assert reasons(d) == ["row_too_large"]
    assert read("medqa", f, max_row_bytes=3_000_000).frame.height == 2  # the limit is per source


# ---------------------------------------------------------------- fuzz

_TOKENS = ['{', '}', '[', ']', ',', ':', '"', '"question"', '"options"', '"answer_idx"', '"A"', '"opa"', '"cop"',
           '"QUESTION"', '"CONTEXTS"', '"final_decision"', '"exams"', '"data"', '"qtext"', '"answers"', '"ra"',
           '"aid"', '"atext"', '"qid"', '1', '-1', '0', '1e999', 'NaN', 'Infinity', 'true', 'null', '"\\ud800"',
           '"\\ud83d\\ude00"', '"yes"', '"x\\n y"', '\n', ' ', '\r\n', '\\', '\x00', 'é', '"a,b"']


def _json_like() -> st.SearchStrategy[bytes]:
    structured = st.recursive(
        st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=8) | st.sampled_from(["A", "B", "yes", "1"]),
        lambda kids: st.lists(kids, max_size=4)
        | st.dictionaries(st.sampled_from(["question", "options", "answer_idx", "opa", "opb", "opc", "opd", "cop",
                                           "QUESTION", "CONTEXTS", "final_decision", "qtext", "answers", "ra",
                                           "aid", "atext", "qid", "q", "a"]) | st.text(max_size=4), kids, max_size=6),
        max_leaves=12,
    ).map(lambda v: json.dumps(v).encode())
    tokens = st.lists(st.sampled_from(_TOKENS), max_size=40).map(lambda ts: "".join(ts).encode("utf-8"))
    lines = st.lists(structured | tokens, min_size=1, max_size=5).map(lambda ls: b"\n".join(ls))
    return structured | tokens | lines | st.binary(max_size=60)


def _csv_like() -> st.SearchStrategy[bytes]:
    cell = st.sampled_from(["", "a", '"', '""', '"a,b"', "A", "1", "x\ny", '"open', "\udcff".encode("utf-8", "surrogateescape").decode("latin-1"), "é"])
    row = st.lists(cell, min_size=1, max_size=7).map(",".join)
    return st.lists(row, min_size=0, max_size=6).map(lambda rs: "\n".join(["q,a", *rs]).encode("utf-8", "surrogateescape")) \
        | st.binary(max_size=60)


_CASES = [("medqa", "f.jsonl", {}), ("medqa", "f.json", {}), ("medmcqa", "f.json", {}), ("pubmedqa", "f.json", {}),
          ("headqa", "f.json", {}), ("generic", "f.json", {"columns": OPEN_QA})]

# A valid row of each layout, with one value replaced by a hostile literal.
_BASE = {
    "medqa": ROW,
    "medmcqa": {"question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 1, "id": "x", "exp": "e"},
    "pubmedqa": {"QUESTION": "Q?", "CONTEXTS": ["c"], "LABELS": ["L"], "final_decision": "yes", "LONG_ANSWER": "l"},
    "headqa": {"qid": "1", "qtext": "Q?", "ra": "1", "answers": [{"aid": 1, "atext": "a"}, {"aid": 2, "atext": "b"}]},
    "generic": {"q": "Q?", "a": "A"},
}
_HOSTILE = ["NaN", "-Infinity", "1e999", '"\\ud800"', '"a \\udc00 b"', "[" * 5000 + "]" * 5000, "null", "[]", "{}",
            "true", "12", '"\\u0000"', '{"x": [NaN]}', '"' + "y" * 50 + '"']


@st.composite
def _hostile_file(draw: Any, fmt: str) -> bytes:
    rows = []
    for _ in range(draw(st.integers(1, 3))):
        base = dict(_BASE[fmt])
        key = draw(st.sampled_from(sorted(base)))
        base[key] = "__HOSTILE__"
        rows.append(json.dumps(base).replace('"__HOSTILE__"', draw(st.sampled_from(_HOSTILE))))
    if fmt == "pubmedqa":
        return ("{" + ", ".join(f'"{i}": {r}' for i, r in enumerate(rows)) + "}").encode()
    if fmt == "headqa":
        return ('{"exams": {"E": {"name": "E", "data": [' + ", ".join(rows) + "]}}}").encode()
    return ("\n".join(rows) + "\n").encode() if draw(st.booleans()) else ("[" + ",\n".join(rows) + "]").encode()


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=st.sampled_from(_CASES), data=st.data())
def test_fuzz_json_sources_never_traceback(tmp_path_factory: pytest.TempPathFactory, case: tuple, data: Any) -> None:
    """Random JSON-ish bytes, and valid rows with one hostile value, through every JSON adapter."""
    fmt, name, kw = case
    raw = data.draw(_json_like() | _hostile_file(fmt.split("-")[0]))
    _check(tmp_path_factory.mktemp("fz"), fmt, name, kw, raw)


def _check(tmp_path: Path, fmt: str, name: str, kw: dict[str, Any], data: bytes) -> None:
    f = tmp_path / name
    f.write_bytes(data)
    try:
        d = read_source(SourceSpec(name="s", format=fmt, path=str(f), **kw), base_dir=tmp_path)
    except MedcurateError:
        return  # a whole-file problem (empty, broken structure, wrong format): a clear error, not a traceback
    assert d.info["rows"] == d.frame.height + d.rejected.height
    assert d.rejected["reason"].null_count() == 0


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=st.sampled_from([("mmlu", "f_test.csv", {}), ("generic", "f.csv", {"columns": OPEN_QA})]), data=_csv_like())
def test_fuzz_csv_sources_never_traceback(tmp_path_factory: pytest.TempPathFactory, case: tuple, data: bytes) -> None:
    fmt, name, kw = case
    _check(tmp_path_factory.mktemp("fz"), fmt, name, kw, data)
