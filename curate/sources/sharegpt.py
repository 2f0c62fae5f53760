"""ShareGPT conversations (`format: sharegpt`): `{conversations: [{from, value}], id?, system?}`.

Roles: `human` -> user, `gpt` -> assistant, `system` -> system (a top-level `system` string becomes
the first turn). Read through `read_records`, so JSON arrays, JSON lines and parquet all work.
FastChat's dummy_conversation.json (500 rows, 2/4/6 turns) and UltraMedical use this layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from curate.sources.base import Adapter, Reject, register_adapter, require, text_of
from curate.sources.conversation import conversation_record

TURN_KEYS = ("conversations", "conversation", "messages")


def turns_of(obj: Mapping[str, Any]) -> tuple[str, Any]:
    """(field name, turn list) of a ShareGPT / messages row."""
    for key in TURN_KEYS:
        if key in obj:
            return key, require(obj, key)
    raise Reject("missing_field", f"no {' / '.join(TURN_KEYS)} field", field=TURN_KEYS[0])


@register_adapter
class ShareGPT(Adapter):
    name = "sharegpt"
    description = "ShareGPT conversations: {conversations: [{from: human|gpt|system, value}]}"

    def convert(self, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, Mapping):
            raise Reject("malformed_row", f"expected an object (one conversation), got {type(obj).__name__}")
        field, turns = turns_of(obj)
        system = text_of(obj.get("system"))
        if system and isinstance(turns, list):
            turns = [{"role": "system", "content": system}, *turns]
        return conversation_record(turns, field, source_id=text_of(obj.get("id")))
