"""OpenAI-style chats (`format: messages`): `{messages: [{role, content}], ...}`.

Roles system / user / assistant (also ShareGPT's names). Other row fields (LLaMA-Factory's KTO
`label`, an `id`) are ignored except `id`, which becomes `source_id`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from curate.sources.base import Adapter, Reject, register_adapter, text_of
from curate.sources.conversation import conversation_record
from curate.sources.sharegpt import turns_of


@register_adapter
class Messages(Adapter):
    name = "messages"
    description = "OpenAI chat messages: {messages: [{role: system|user|assistant, content}]}"

    def convert(self, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, Mapping):
            raise Reject("malformed_row", f"expected an object (one chat), got {type(obj).__name__}")
        field, turns = turns_of(obj)
        return conversation_record(turns, field, source_id=text_of(obj.get("id")))
