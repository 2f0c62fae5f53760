"""CounselChat (`format: counsel-chat`): one question, several therapist answers scored by upvotes.

CSV header: (index), questionID, questionTitle, questionText, questionLink, topic, therapistInfo,
therapistURL, answerText, upvotes, views, split. One row per answer; a question's answers are not
always adjacent (14 of the 695 questions in the train file come back later), so the file is read twice,
streaming both times: the first pass keeps only (questionID -> best row), the second converts.

The best answer of a question is the one with the most upvotes, the earliest in the file on a tie
(177 of 695 questions have a tie at the top). Every other answer is rejected `not_best_answer` with
the row and upvotes of the kept one. `question` = title + text (the title is often the question and
the text its background), `subject` = topic, sub-task `mental_health`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from curate.sources.base import Adapter, RawRow, Reject, as_int, register_adapter, require, text_of
from curate.sources.files import read_records


def _votes(obj: Any) -> int:
    try:
        return as_int(obj.get("upvotes") or 0, "upvotes")
    except Reject:
        return 0


@register_adapter
class CounselChat(Adapter):
    name = "counsel-chat"
    description = "CounselChat CSV: several scored therapist answers per question; the best one is kept"
    folder_glob = ("*.csv",)

    def read_file(self, path: Path) -> Iterator[RawRow]:
        return self._best_marked(lambda: read_records(path))

    def read_hub(self, dataset: Any) -> Iterator[RawRow]:
        """`nbertagnolli/counsel-chat` has the same columns as the CSV."""
        return self._best_marked(lambda: super(CounselChat, self).read_hub(dataset))

    def _best_marked(self, rows: Callable[[], Iterator[RawRow]]) -> Iterator[RawRow]:
        best: dict[str, tuple[int, int]] = {}  # questionID -> (-upvotes, row): min() is the best
        for i, row in enumerate(rows(), 1):
            if row.error is None and isinstance(row.obj, Mapping) and row.obj.get("questionID") is not None:
                qid = str(row.obj["questionID"])
                best[qid] = min(best.get(qid, (0, i)), (-_votes(row.obj), i))
        for i, row in enumerate(rows(), 1):
            if row.error is None and isinstance(row.obj, Mapping):
                qid = str(row.obj.get("questionID"))
                votes, at = best.get(qid, (0, i))
                row.obj = {**row.obj, "_row": i, "_best_row": at, "_best_votes": -votes}
            yield row

    def convert(self, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, Mapping):
            raise Reject("malformed_row", f"expected one answer row, got {type(obj).__name__}")
        qid = text_of(require(obj, "questionID"))
        if obj.get("_best_row") is not None and obj["_best_row"] != obj["_row"]:
            raise Reject("not_best_answer", f"question {qid}: the answer at data row {obj['_best_row']} has more "
                                            f"upvotes ({obj['_best_votes']} vs {_votes(obj)}) or ties earlier")
        title, text = text_of(obj.get("questionTitle")), text_of(obj.get("questionText"))
        question = text if not title else title if not text or text.startswith(title) else f"{title}\n\n{text}"
        return {
            "source_id": qid, "task": "open_qa", "question": question or "", "context": None, "options": [],
            "answer": text_of(require(obj, "answerText")) or "", "subject": text_of(obj.get("topic")),
            "subtask": "mental_health",
        }
