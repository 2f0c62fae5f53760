"""UltraMedical conversations (`format: ultramedical`): ShareGPT rows plus `id` ("Source,n"), `type`.

`type` sets the sub-task: Exam (or mc) -> `mcq` (the options are inline in the human turn, the reply explains
and names the letter), Literature -> `qa_with_context`, Open-End -> `open_qa`; the origin dataset
(the part of `id` before the comma) goes to `subject`. `answer` stays the last assistant turn; the
file's own `answer` field (a letter for Exam rows) is kept in the extra column `gold`.
Candidate `model_outputs` (medqa_outputs.json) are ignored: they are preference material.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import polars as pl

from curate.sources.base import Adapter, Reject, register_adapter, text_of
from curate.sources.conversation import conversation_record
from curate.sources.sharegpt import turns_of

SUBTASK_OF_TYPE = {"exam": "mcq", "mc": "mcq", "literature": "qa_with_context", "open-end": "open_qa"}


@register_adapter
class UltraMedical(Adapter):
    name = "ultramedical"
    description = "UltraMedical: ShareGPT conversations with id 'Source,n', type Exam|Open-End|Literature"
    extra_columns: ClassVar[dict[str, pl.DataType]] = {"gold": pl.Utf8}

    def convert(self, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, Mapping):
            raise Reject("malformed_row", f"expected an object (one conversation), got {type(obj).__name__}")
        field, turns = turns_of(obj)
        sid = text_of(obj.get("id"))
        kind = (text_of(obj.get("type")) or "").strip().lower()
        return conversation_record(
            turns, field, source_id=sid, subtask=SUBTASK_OF_TYPE.get(kind),
            subject=sid.split(",")[0] if sid and "," in sid else None, gold=text_of(obj.get("answer")),
        )
