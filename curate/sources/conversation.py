"""Shared by the chat-format adapters (sharegpt, messages, ultramedical, chatdoctor): turns -> one record.

A conversation becomes one canonical record whose `turns` hold every message in order (roles mapped
to system / user / assistant by `curate.sources.preference.as_messages`, which knows ShareGPT's
human / gpt and OpenAI's role names), `question` the first user turn and `answer` the last assistant
turn, so QA steps (validate, dedup, decontaminate) work on conversations unchanged. `task` is
`dialogue` when the user speaks more than once, else `open_qa`.

Reject reasons: `empty_turn` (a turn with no text), `no_user_turn`, `no_assistant_reply` (the
conversation does not end with an assistant turn: nothing to train on), `malformed_row`.
"""

from __future__ import annotations

from typing import Any

from curate.sources.base import Reject
from curate.sources.preference import as_messages


def conversation_record(value: Any, field: str, **extra: Any) -> dict[str, Any]:
    """A canonical record dict from a list of messages (`{role, content}` or `{from, value}`)."""
    turns = as_messages(value, field, "user")
    for i, t in enumerate(turns):
        if not t["content"].strip():
            raise Reject("empty_turn", f"{field}[{i}] ({t['role']}) has no text", field=field)
    users = [t["content"] for t in turns if t["role"] == "user"]
    if not users:
        raise Reject("no_user_turn", f"{field} has no user turn ({len(turns)} turns)", field=field)
    if turns[-1]["role"] != "assistant":
        raise Reject("no_assistant_reply", f"{field} ends with a {turns[-1]['role']} turn, "
                                           "not an assistant reply to train on", field=field)
    return {
        "task": "dialogue" if len(users) > 1 else "open_qa",
        "question": users[0],
        "context": None,
        "options": [],
        "answer": turns[-1]["content"],
        "turns": turns,
        **extra,
    }
