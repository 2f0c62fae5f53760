"""Issue 11: conversations and sub-tasks on the canonical record, and the open-ended source formats."""

from __future__ import annotations

import polars as pl

from curate.record import record_id, to_frame, with_ids


def test_turns_enter_the_id_only_when_present() -> None:
    base = {"question": "What is X?", "options": [], "answer": "Y", "context": None}
    turns = [{"role": "user", "content": "What is X?"}, {"role": "assistant", "content": "Y"}]
    assert record_id(**base) == record_id(**base, turns=[])  # single-turn ids are unchanged
    longer = [*turns, {"role": "user", "content": "And Z?"}, {"role": "assistant", "content": "Y"}]
    assert record_id(**base, turns=turns) != record_id(**base, turns=longer)
    frame = to_frame([{**base, "task": "open_qa"}, {**base, "task": "dialogue", "turns": longer}])
    assert frame["id"].to_list() == [record_id(**base), record_id(**base, turns=longer)]
    assert with_ids(frame.with_columns(pl.lit(None).alias("id")))["id"].equals(frame["id"])
