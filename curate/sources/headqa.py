"""HEAD-QA: the release's nested exams JSON, and the Hub's flat layout.

Release layout: `{version, language, exams: {NAME: {name, category, year, data: [{qid, qtext, ra,
answers: [{aid, atext}], image}]}}}`; Hub layout (`dvilares/head_qa`, formerly `head_qa`): one row
per question with `name`, `category`, `year`, `qid`, `qtext`, `ra`, `answers`, `image`.

Record: task `mcq`; options are labelled by their `aid` mapped to letters (1 -> A, 2 -> B, ...,
sorted by aid), so the gold letter is `ra` mapped the same way; subject = `category`;
source_id = `<exam name>/<qid>`; source_split = the recipe's `split`.

Some questions refer to an image that is not part of the text data. The adapter keeps the image
reference in an extra column `image` (Utf8: the path from the release, the Hub file path, or
`<embedded image>`; null when none) so the validate step can reject those rows as `needs_image`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from curate.errors import InputError
from curate.sources.base import (
    LETTERS,
    Adapter,
    RawRow,
    Reject,
    as_int,
    match_label,
    options_from,
    register_adapter,
    require,
    text_of,
)
from curate.sources.files import iter_json_records
from curate.sources.jsonstream import JsonCursor, JsonSyntaxError
from curate.sources.readers import item_row, open_read, sniff_json, syntax_error


def _image(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, Mapping):  # datasets.Image(decode=False): {"path", "bytes"}
        return text_of(value.get("path")) or ("<embedded image>" if value.get("bytes") else None)
    if isinstance(value, (str, bytes)):
        return text_of(value) if isinstance(value, str) else "<embedded image>"
    return "<embedded image>"


def _letter(aid: int) -> str:
    if not 1 <= aid <= len(LETTERS):
        raise Reject("malformed_row", f"answer id {aid} is outside 1..{len(LETTERS)}", field="aid")
    return LETTERS[aid - 1]


@register_adapter
class HeadQA(Adapter):
    name = "headqa"
    description = "HEAD-QA nested exams JSON (HEAD_EN / HEAD release) or the Hub's flat head_qa layout"
    folder_glob = "*.json"
    extra_columns = {"image": pl.Utf8}

    def read_file(self, path: Path) -> Iterator[RawRow]:
        if sniff_json(path) != "object":
            return iter_json_records(path)  # flat rows (a Hub export as JSON array / lines)
        return self._exams(path)

    def _exams(self, path: Path) -> Iterator[RawRow]:
        """The release's `{exams: {NAME: {..., data: [...]}}}` read one exam at a time (~250 questions)."""
        with open_read(path) as fh:
            try:
                cur = JsonCursor(fh)
                keys: list[str] = []
                for key in cur.members():
                    keys.append(key)
                    if key == "exams":
                        if cur.peek() != "{":
                            raise InputError("field 'exams' must be an object of exams", file=str(path), field="exams")
                        for name in cur.members():
                            item = cur.item()
                            if item.reason is not None:
                                raise InputError(f"exam {name!r} is not valid JSON: {item.detail}", file=str(path),
                                                 row=item.line, field=f"exams.{name}")
                            yield from self._questions(path, name, item.obj)
                    elif key == "data" and "exams" not in keys and cur.peek() == "[":
                        for i, item in enumerate(cur.elements(), 1):  # {"data": [flat rows]}
                            yield item_row(path, item, f"{path.name} data record {i}")
                        keys.append("<rows>")
                    else:
                        cur.item()
                if not cur.at_end():
                    raise cur.error("extra data after the JSON document")
            except JsonSyntaxError as err:
                raise syntax_error(path, err) from None
        if "exams" not in keys and "<rows>" not in keys:
            raise InputError(f"expected a HEAD-QA exams file (an 'exams' object) or a 'data' array of rows; got an "
                             f"object with keys {', '.join(keys[:8])}", file=str(path),
                             hint="check the source's `format:`")

    def _questions(self, path: Path, key: str, exam: Any) -> Iterator[RawRow]:
        if not isinstance(exam, Mapping) or not isinstance(exam.get("data"), list):
            raise InputError(f"exam {key!r} has no 'data' list of questions", file=str(path),
                             field=f"exams.{key}.data", hint="is this a HEAD-QA exams file?")
        meta = {"name": exam.get("name") or key, "category": exam.get("category"), "year": exam.get("year")}
        for i, q in enumerate(exam["data"], 1):
            obj = {**meta, **q} if isinstance(q, Mapping) else q
            qid = q.get("qid") if isinstance(q, Mapping) else None
            yield RawRow(obj=obj, where=f"{path.name} exam {key} question {qid or i}")

    def convert(self, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, Mapping):
            raise Reject("malformed_row", f"expected a JSON object, got {type(obj).__name__}")
        qid = require(obj, "qid")
        question = require(obj, "qtext")
        answers = require(obj, "answers")
        if not isinstance(answers, list) or not all(isinstance(a, Mapping) for a in answers):
            raise Reject("malformed_row", "field 'answers' must be a list of {aid, atext}", field="answers")
        pairs = sorted(((as_int(require(a, "aid"), "aid"), a.get("atext")) for a in answers), key=lambda p: p[0])
        options = options_from((_letter(aid), text) for aid, text in pairs)
        ra = as_int(require(obj, "ra"), "ra")
        answer = match_label(_letter(ra) if 1 <= ra <= len(LETTERS) else ra, options, "ra")
        exam = text_of(obj.get("name"))
        return {
            "source_id": f"{exam}/{qid}" if exam else str(qid),
            "task": "mcq",
            "question": str(question),
            "options": options,
            "answer": answer,
            "subject": text_of(obj.get("category")),
            "image": _image(obj.get("image")),
        }
