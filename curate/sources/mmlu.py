"""MMLU (hendrycks/test): headerless 6-column CSV files, one per subject, and the Hub layout.

Local files: `question, A, B, C, D, answer-letter`, no header (CRLF line ends are fine). A source path
may be one file, a folder (all `*.csv` in it) or a glob (`test/*_test.csv`). The subject comes from
the file name without its split suffix (`clinical_knowledge_test.csv` -> `clinical_knowledge`).
Files in the Hugging Face layout are read too (issue 11): a CSV whose first row is a header
(`question,choice0..choice3,answer`, `question,A,B,C,D,answer`, or `question,subject,choices,answer`
with the choices as a JSON / Python / numpy list), or JSON lines / JSON / parquet rows with `question`,
`choices` and `answer` (an index from 0, a letter, or the option's text). The header is never a row.
The source split is the recipe's `split` when set there, else the file-name suffix
(`_test`, `_dev`, `_val`), else `train`. Hub (`cais/mmlu`): `question`, `subject`, `choices`, `answer` (0-3).

Record: task `mcq`, options A-D, answer = the letter; source_id = `<subject>/<row in its file>`.
A row without exactly 6 fields is `malformed_csv`.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from curate.sources.base import (
    Adapter,
    RawRow,
    Reject,
    lettered,
    match_answer,
    match_index,
    match_label,
    options_from_list,
    register_adapter,
    require,
    text_of,
)
from curate.sources.files import iter_csv, read_records

_SPLIT = re.compile(r"_(test|dev|val|validation|train)$")


def subject_of(path: Path) -> tuple[str, str | None]:
    """(subject, split suffix or None) from a file name like `anatomy_test.csv`."""
    m = _SPLIT.search(path.stem)
    return (path.stem[: m.start()], m.group(1)) if m else (path.stem, None)


_OPTION_COLUMN = re.compile(r"(?:choice|option|ending)_?(\d+)", re.IGNORECASE)
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"")


def _is_header(cells: list[str]) -> bool:
    names = {c.strip().lower() for c in cells}
    return "question" in names and "answer" in names


def parse_list(value: Any, name: str) -> list[Any]:
    """A list of option texts: a list, or a cell holding JSON, a Python list or numpy's `['a' 'b']` repr."""
    if isinstance(value, (list, tuple)):
        return list(value)
    text = str(value).strip()
    if text.startswith("[") and len(text) < 1_000_000:
        quoted = list(_QUOTED.finditer(text))
        gaps = [text[a.end():b.start()] for a, b in zip(quoted, quoted[1:], strict=False)]
        if len(quoted) > 1 and not any(g.strip() for g in gaps):  # numpy's repr: ['a' 'b'], no commas
            try:
                return [ast.literal_eval(q.group(0)) for q in quoted]
            except (ValueError, SyntaxError):
                pass
        try:
            parsed = json.loads(text)
        except ValueError:
            try:
                parsed = ast.literal_eval(text)
            except (ValueError, SyntaxError, RecursionError, MemoryError, TypeError):
                parsed = [a or b for a, b in _QUOTED.findall(text)]  # numpy repr: no commas
        if isinstance(parsed, (list, tuple)) and parsed:
            return list(parsed)
    raise Reject("malformed_row", f"column '{name}' must hold a list of options, got {text[:80]!r}", field=name)


def hf_row(row: Mapping[str, Any], columns: list[str]) -> dict[str, Any]:
    """A row of the Hugging Face layout (`question`, `choices` list or `choice0..N` / `A..D` columns,
    `answer` index or letter, optional `subject`) as the adapter's Hub-style object."""
    lower = {c.strip().lower(): c for c in columns}
    numbered = sorted((int(m.group(1)), c) for c in columns if (m := _OPTION_COLUMN.fullmatch(c.strip())))
    if numbered:
        choices: Any = [row[c] for _, c in numbered]
    elif "choices" in lower:
        choices = parse_list(row[lower["choices"]], lower["choices"])
    elif "options" in lower:
        choices = parse_list(row[lower["options"]], lower["options"])
    else:
        choices = [row[lower[k]] for k in "abcdefgh" if k in lower]
    return {"question": row.get(lower.get("question", "question")), "choices": choices,
            "answer": row.get(lower.get("answer", "answer")),
            "subject": row.get(lower["subject"]) if "subject" in lower else None}


@register_adapter
class MMLU(Adapter):
    name = "mmlu"
    description = "MMLU headerless 6-column CSV files (one per subject; file, folder or glob) or cais/mmlu"
    folder_glob = "*.csv"

    def read_file(self, path: Path) -> Iterator[RawRow]:
        subject, suffix = subject_of(path)
        split = self.ctx.split if self.ctx.split_stated or not suffix else suffix
        if path.suffix.lower() not in (".csv", ".tsv"):
            return self._records(path, subject, split)
        rows = iter_csv(path, header=False)
        first = next(rows, None)
        rows.close()  # type: ignore[attr-defined]
        if first is not None and isinstance(first.obj, list) and _is_header(first.obj):
            return self._hf_csv(path, subject, split)
        return self._original(path, subject, split)

    def _original(self, path: Path, subject: str, split: str) -> Iterator[RawRow]:
        """The original release: no header, `question, A, B, C, D, answer-letter`."""
        for i, row in enumerate(iter_csv(path, header=False, width=6), 1):
            if row.error is None:
                row.obj = {"fields": row.obj, "subject": subject, "split": split, "n": i}
            yield row

    def _hf_csv(self, path: Path, subject: str, split: str) -> Iterator[RawRow]:
        """A Hugging Face export as CSV: a header row (`question,choice0..choice3,answer` or `choices`)."""
        for i, row in enumerate(iter_csv(path, header=True), 1):
            if row.error is None:
                row.obj = {**hf_row(row.obj, list(row.obj)), "_subject": subject, "split": split, "n": i}
            yield row

    def _records(self, path: Path, subject: str, split: str) -> Iterator[RawRow]:
        """JSON lines / JSON / parquet rows in the Hugging Face layout (`choices` list, `answer` index)."""
        for i, row in enumerate(read_records(path), 1):
            if row.error is None and isinstance(row.obj, Mapping):
                row.obj = {**hf_row(row.obj, list(row.obj)), "_subject": subject, "split": split, "n": i}
            yield row

    def convert(self, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, Mapping):
            raise Reject("malformed_row", f"expected a row, got {type(obj).__name__}")
        if "fields" in obj:  # local CSV
            question, *texts, letter = obj["fields"]
            options = lettered(texts)
            answer = match_label(letter, options, "answer letter")
            subject, sid, split = obj["subject"], f"{obj['subject']}/{obj['n']}", obj["split"]
        else:  # Hugging Face layout: the Hub, or a file exported from it
            question = require(obj, "question")
            options = options_from_list(parse_list(require(obj, "choices"), "choices"))
            answer = _hf_answer(require(obj, "answer"), options)
            subject = text_of(obj.get("subject")) or obj.get("_subject")
            sid = f"{subject}/{obj['n']}" if "n" in obj else None
            split = obj.get("split", self.ctx.split)
        return {
            "source_id": sid,
            "source_split": split,
            "task": "mcq",
            "question": str(question),
            "options": options,
            "answer": answer,
            "subject": subject,
        }


def _hf_answer(answer: Any, options: list[dict[str, str]]) -> str:
    """The gold label from an index counted from 0 (the Hub's ClassLabel), a letter, or the option text."""
    if isinstance(answer, int) or (isinstance(answer, str) and answer.strip().isdigit()):
        return match_index(answer, options, 0)
    if isinstance(answer, str) and len(answer.strip()) == 1:
        return match_label(answer, options)
    return match_answer(answer, options)
