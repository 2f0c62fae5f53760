"""ChatDoctor GenMedGPT (`format: chatdoctor`): Alpaca rows where `input` is the patient's message.

Every row's `instruction` is the same role prompt ("If you are a doctor, please answer the medical
questions based on the patient's description."), so it is kept as the system turn, the patient's
message is the user turn and the doctor's reply the assistant turn: `turns` = [system, user, assistant],
`question` = the patient's message, sub-task `dialogue`.
"""

from __future__ import annotations

from typing import Any

from curate.sources.alpaca import as_mapping
from curate.sources.base import Adapter, register_adapter, require, text_of
from curate.sources.conversation import conversation_record


@register_adapter
class ChatDoctor(Adapter):
    name = "chatdoctor"
    description = "ChatDoctor GenMedGPT / HealthCareMagic / iCliniq: {instruction, input (patient), output (doctor)}"

    def convert(self, obj: Any) -> dict[str, Any]:
        obj = as_mapping(obj)
        turns = [{"role": "user", "content": text_of(require(obj, "input")) or ""},
                 {"role": "assistant", "content": text_of(require(obj, "output")) or ""}]
        system = text_of(obj.get("instruction"))
        if system:
            turns.insert(0, {"role": "system", "content": system})
        return conversation_record(turns, "input", source_id=text_of(obj.get("id")), subtask="dialogue")
