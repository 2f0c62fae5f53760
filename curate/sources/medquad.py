"""MedQuAD XML (`format: medquad`): one XML document per file, one record per QA pair.

Both schemas in the release are read: `<Document id source url><Focus/>...<QAPairs><QAPair pid>
<Question qid qtype/><Answer/>` and the older lower-case `<doc docid corpus url><doctitle-focus/>
<qaPairs><pair pid><question qid qtype/><answer/>` (4 NINDS files, 16 pairs). A folder is read
recursively (`**/*.xml`). Files are small (< 100 kB), so each is parsed whole; the pairs stream out.

`qtype` sets the sub-task: treatment -> `treatment`; symptoms, exams and tests, diagnosis ->
`diagnosis`; anything else -> `open_qa`. `subject` is the document's focus. An empty answer is
rejected `answer_removed` when the file says its answers were removed for copyright (every pair in
12_MPlusHerbsSupplements_QA: 792 of 792), else `empty_answer`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from curate.errors import InputError
from curate.sources.base import Adapter, RawRow, Reject, register_adapter, text_of
from curate.sources.files import dump, read_nonempty

REMOVED_MARK = b"were removed to comply"
SUBTASK_OF_QTYPE = {"treatment": "treatment", "symptoms": "diagnosis", "exams and tests": "diagnosis",
                    "diagnosis": "diagnosis"}


def _child(elem: ET.Element, *names: str) -> ET.Element | None:
    return next((c for n in names if (c := elem.find(n)) is not None), None)


def _pairs(root: ET.Element) -> Iterator[tuple[ET.Element, ET.Element | None, ET.Element | None]]:
    container = _child(root, "QAPairs", "qaPairs")
    for pair in [] if container is None else list(container):
        yield pair, _child(pair, "Question", "question"), _child(pair, "Answer", "answer")


@register_adapter
class MedQuAD(Adapter):
    name = "medquad"
    description = "MedQuAD XML documents (both schemas); a folder is read recursively"
    folder_glob = ("**/*.xml",)

    def read_file(self, path: Path) -> Iterator[RawRow]:
        data = read_nonempty(path)
        try:
            root = ET.fromstring(data)
        except ET.ParseError as err:
            raise InputError(f"not valid XML: {err}", file=str(path),
                             hint="MedQuAD files are XML documents; check the file is complete") from None
        removed = REMOVED_MARK in data
        doc_id = root.get("id") or root.get("docid")
        focus = _child(root, "Focus", "doctitle-focus")
        for i, (pair, q, a) in enumerate(_pairs(root), 1):
            obj = {
                "document": doc_id, "source": root.get("source") or root.get("corpus"), "url": root.get("url"),
                "focus": None if focus is None else (focus.text or "").strip(), "pid": pair.get("pid"),
                "qid": None if q is None else q.get("qid"), "qtype": None if q is None else q.get("qtype"),
                "question": None if q is None else q.text, "answer": None if a is None else a.text,
                "answers_removed": removed,
            }
            yield RawRow(raw=dump(obj), obj=obj, where=f"{path.name} pair {pair.get('pid') or i}")

    def read_hub(self, dataset: Any) -> Iterator[RawRow]:
        """A Hub table of MedQuAD pairs (e.g. lavita/MedQuAD: question_id, question_type, question,
        answer, question_focus, document_source): columns renamed to the XML reader's keys."""
        names = {"question_id": "qid", "question_type": "qtype", "question_focus": "focus",
                 "document_source": "source", "document_id": "document"}
        for row in super().read_hub(dataset):
            if isinstance(row.obj, Mapping):
                row.obj = {names.get(k, k.lower()): v for k, v in row.obj.items()}
            yield row

    def convert(self, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, Mapping):
            raise Reject("malformed_row", f"expected a QA pair, got {type(obj).__name__}")
        question = text_of(obj.get("question"))
        if question is None:
            raise Reject("empty_question", "the pair has no question text", field="question")
        answer = text_of(obj.get("answer"))
        if answer is None:
            if obj.get("answers_removed"):
                raise Reject("answer_removed", "MedQuAD removed this answer for MedlinePlus copyright "
                                               "(the file says so): a question without an answer", field="answer")
            raise Reject("empty_answer", "the pair has no answer text", field="answer")
        qtype = (obj.get("qtype") or "").strip().lower()
        return {
            # qids restart in every folder ("0000001-1" is in each): prefix the collection (NINDS, ...)
            "source_id": f"{obj.get('source')}/{obj.get('qid') or str(obj.get('document')) + '-' + str(obj.get('pid'))}",
            "task": "open_qa",
            "question": question.strip(),
            "context": None,
            "options": [],
            "answer": answer,
            "subject": obj.get("focus") or None,
            "subtask": SUBTASK_OF_QTYPE.get(qtype, "open_qa"),
        }
