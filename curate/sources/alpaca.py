"""Alpaca instructions (`format: alpaca`): `{instruction, input, output}` -> one single-turn record.

`question` = instruction, `context` = input (blank or AlpaCare's literal `<noinput>` -> null),
`answer` = output. Single-turn rows keep `turns` empty (Aloe keeps single-turn data in Alpaca form);
the template step builds the chat. Also used by chatdoctor.py and medinstruct.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from curate.sources.base import Adapter, Reject, register_adapter, require, text_of

NO_INPUT = {"<noinput>", "<no input>", "noinput"}


def input_of(obj: Mapping[str, Any]) -> str | None:
    """The optional `input` field as text; blank or `<noinput>` -> None."""
    value = text_of(obj.get("input"))
    return None if value is None or value.strip().lower() in NO_INPUT else value


def as_mapping(obj: Any) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise Reject("malformed_row", f"expected an object (one instruction), got {type(obj).__name__}")
    return obj


@register_adapter
class Alpaca(Adapter):
    name = "alpaca"
    description = "Alpaca instructions: {instruction, input, output}"

    def convert(self, obj: Any) -> dict[str, Any]:
        obj = as_mapping(obj)
        return {
            "source_id": text_of(obj.get("id")),
            "task": "open_qa",
            "question": text_of(require(obj, "instruction")) or "",
            "context": input_of(obj),
            "options": [],
            "answer": text_of(require(obj, "output")) or "",
        }
