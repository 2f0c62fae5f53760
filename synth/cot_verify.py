"""Deciding a `cot` reply: the parsed answer against the gold one, truncation, and echoes of the question.

Kept apart from the step (`synth.steps.cot`) so that the verification helper process (`synth.lane`) imports
only this module and `synth.parse`, not polars, pydantic or the step registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synth.parse import (
    copied_fraction,
    echo_measures,
    find_answer,
    norm,
    open_matches,
    parse_mcq,
    parse_ynm,
    words,
)

#: the row fields `verify` reads, in the order `verify_batch` items carry them
ROW_FIELDS = ("task", "answer", "question", "context", "options")


@dataclass
class Verdict:
    cot: str | None
    reason: str | None
    detail: str | None


def gold_display(row: dict[str, Any]) -> str:
    return str(row["answer"]).strip().lower() if row["task"] == "yes_no_maybe" else str(row["answer"]).strip()


def verify(row: dict[str, Any], text: str, finish_reason: str | None, *, min_new_words: int, max_copied: float) -> Verdict:
    """Decide one teacher reply for one row. A kept CoT ends with a canonical `Answer: X` line.

    Decided as each reply arrives. Issue 17c measured the alternatives on
    benchmarks/teacher_client.py (2,000 real MedQA calls, 512 in flight, three interleaved runs each, loaded
    2-core machine): sending each attempt as a wave and verifying the wave afterwards (same `verify`) gave the
    same CPU per call (0.255-0.257 ms against 0.249-0.263 per reply) and a slightly slower cache replay
    (0.072-0.075 against 0.065-0.071 ms), so the simpler per-reply loop stayed; the echo check as polars
    expressions (NFKD, regex tokenising, explode, join, runs per row) cost about 100 us a reply against about
    19 us for `words` + `echo_measures`. Issue 17d measured deciding each reply as soon as the client parsed
    it (before the wait for its cache commit, while its bytes were in the CPU caches): slower, 86 -> 93 us
    CPU a row for the step without HTTP (9 interleaved runs of 4,000 MedQA rows): the verifications of the
    replies one commit releases run back to back, which keeps this code hot. Since issue 17 the `cot` step runs
    it in a helper process (`synth.lane`, through `verify_batch`) for frames of at least 256 rows sent at least 256
    at a time."""
    if finish_reason == "length":
        return Verdict(None, "truncated", "finish_reason=length")
    found = find_answer(text)
    if found is None:
        return Verdict(None, "no_answer", "no `Answer:` line")
    task, gold = row["task"], str(row["answer"]).strip()
    if task == "mcq":
        got = parse_mcq(found.text, row["options"] or [])
        ok = got is not None and got.casefold() == gold.casefold()
    elif task == "yes_no_maybe":
        got = parse_ynm(found.text)
        ok = got is not None and got == norm(gold)
    else:
        got = found.text
        ok = open_matches(found.text, gold)
    if got is None:
        return Verdict(None, "no_answer", f"unparsable answer line {found.text[:60]!r}")
    if not ok:
        return Verdict(None, "wrong_answer", f"answered {str(got)[:60]!r}, gold {gold[:60]!r}")
    body = text[: found.start].strip()
    source = " ".join(
        [row.get("question") or "", row.get("context") or ""] + [o["text"] for o in row.get("options") or []]
    )
    body_words, source_words = words(body), words(source)
    new, copied = echo_measures(body_words, source_words, max_copied)  # copied None: at most max_copied
    if new < min_new_words or (copied is not None and copied > max_copied):
        if copied is None:
            copied = copied_fraction(body_words, source_words)
        return Verdict(None, "echo", f"{new} new words, {copied:.0%} copied from the question")
    final = found.text if task == "open_qa" else gold_display(row)
    return Verdict(f"{body}\n\nAnswer: {final}", None, None)


def verify_batch(items: list[tuple[tuple[Any, ...], str, str | None, int, float]]) -> list[tuple[str | None, ...]]:
    """`verify` over `(row fields in ROW_FIELDS order, text, finish_reason, min_new_words, max_copied)` items, as
    `(cot, reason, detail)` tuples: the function the verification helper process runs (`synth.lane`)."""
    out = []
    for values, text, finish_reason, min_new_words, max_copied in items:
        v = verify(dict(zip(ROW_FIELDS, values, strict=True)), text, finish_reason, min_new_words=min_new_words,
                   max_copied=max_copied)
        out.append((v.cot, v.reason, v.detail))
    return out
