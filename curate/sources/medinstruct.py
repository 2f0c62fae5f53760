"""AlpaCare MedInstruct (`format: medinstruct`): Alpaca rows with a task `type`, or the test file's answers.

MedInstruct-52k and med_seed.json: {instruction, input (`<noinput>`), output?, type, topic}.
MedInstruct-test.jsonl: {id, instruction, gpt-4-answer, ...}: the GPT-4 reference answer is the target.
`type` (28 spellings in med_seed.json: "Open Q&A", "Summarizations", "Rewrite Task", ...) sets the
sub-task; `topic` goes to `subject`. A row with no answer at all (the 167 clinician seed tasks) is
rejected `no_reference_answer`.
"""

from __future__ import annotations

from typing import Any

from curate.sources.alpaca import as_mapping, input_of
from curate.sources.base import Adapter, Reject, register_adapter, require, text_of

ANSWER_KEYS = ("output", "gpt-4-answer")
#: Lower-cased prefix of `type` -> sub-task (first match wins).
SUBTASK_OF_TYPE = [
    ("open", "open_qa"), ("text gen", "text_generation"), ("chat", "dialogue"),
    ("classif", "classification"), ("summar", "summarization"), ("multiple c", "open_qa"),
    ("multiple-c", "open_qa"), ("usmle", "open_qa"), ("single", "explanation"), ("multi", "explanation"),
    ("rewrit", "text_generation"),
]


def subtask_of_type(value: str | None) -> str | None:
    key = (value or "").strip().lower()
    return next((sub for prefix, sub in SUBTASK_OF_TYPE if key.startswith(prefix)), None)


@register_adapter
class MedInstruct(Adapter):
    name = "medinstruct"
    description = "AlpaCare MedInstruct: {instruction, input, output | gpt-4-answer, type, topic}"

    def convert(self, obj: Any) -> dict[str, Any]:
        obj = as_mapping(obj)
        answer = next((text_of(obj.get(k)) for k in ANSWER_KEYS if text_of(obj.get(k))), None)
        if answer is None:
            raise Reject("no_reference_answer", "no output / gpt-4-answer: an instruction without a target "
                                                "(e.g. a clinician seed task)", field="output")
        return {
            "source_id": text_of(obj.get("id")),
            "task": "open_qa",
            "question": text_of(require(obj, "instruction")) or "",
            "context": input_of(obj),
            "options": [],
            "answer": answer,
            "subject": text_of(obj.get("topic")),
            "subtask": subtask_of_type(text_of(obj.get("type"))),
        }
