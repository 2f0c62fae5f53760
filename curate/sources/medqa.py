"""MedQA (USMLE): the original release and its common Hub layouts.

Layouts read (each row is one question, task `mcq`, answer = the gold option letter):

- original release (jsonl, or a JSON array of the same objects, e.g. a train subset):
  `question`, `options` {A: text, ...}, `answer_idx` (letter), `answer` (gold text), `meta_info`;
  the Hub's `GBaker/MedQA-USMLE-4-options` has the same fields;
- BigBio source schema: `options` as a list of `{key, value}`;
- multiple-choice layout (`GBaker/MedQA-USMLE-4-options-hf`): `sent1` (+ `sent2`), `ending0..N`,
  `label` (0-based);
- BigBio QA schema: `choices` (list of texts) and `answer` (gold text, or a one-element list);
- converted layouts found in the wild: `options` as a list of strings with letter prefixes
  (`"A. text"`, `"(B) text"`: the prefixes become the labels) and the answer as the option text,
  the letter, or `"C. text"` (issue 11).

When both the gold letter and the gold text are present they must agree (after whitespace/case
normalisation), else the row is rejected as `answer_text_mismatch`. `subject` is `meta_info`
(`step1`, `step2&3`); `source_id` is the row's `id` when the layout has one, else its row number.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from curate.sources.base import (
    Adapter,
    Reject,
    canon,
    lettered,
    match_answer,
    match_index,
    match_label,
    missing,
    options_from,
    options_from_list,
    prefixed_label,
    register_adapter,
    require,
    text_of,
)


def _options(obj: Mapping[str, Any]) -> list[dict[str, str]]:
    if "options" in obj and obj["options"] is not None:
        opts = obj["options"]
        if isinstance(opts, Mapping):
            return options_from(opts.items())
        if isinstance(opts, list) and all(isinstance(o, Mapping) and "key" in o for o in opts):
            return options_from((o["key"], o.get("value")) for o in opts)
        if isinstance(opts, list):
            return options_from_list(opts)  # "A. text" prefixes become the labels
        raise Reject("malformed_row", f"field 'options' must be a mapping or a list, got {type(opts).__name__}",
                     field="options")
    endings = sorted((k for k in obj if k.startswith("ending") and k[6:].isdigit()), key=lambda k: int(k[6:]))
    if endings:
        return lettered(obj[k] for k in endings)
    if isinstance(obj.get("choices"), list):
        return options_from_list(obj["choices"])
    raise missing("options")


def _via_prefix(gold_text: str, options: list[dict[str, str]]) -> str | None:
    """The label a gold text names by letter, `B` or `B. text` (None when it does not, or its text differs)."""
    bare = gold_text.strip()
    hit = next((o["label"] for o in options if o["label"].casefold() == bare.casefold()), None)
    if hit is not None:
        return hit
    try:
        return prefixed_label(gold_text, options, "answer")
    except Reject:
        return None


@register_adapter
class MedQA(Adapter):
    name = "medqa"
    description = "MedQA (USMLE) original jsonl / JSON array and the common Hub layouts"

    def convert(self, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, Mapping):
            raise Reject("malformed_row", f"expected a JSON object, got {type(obj).__name__}")
        if "question" in obj:
            question = require(obj, "question")
        elif "sent1" in obj:
            question = " ".join(str(obj[k]) for k in ("sent1", "sent2") if obj.get(k))
        else:
            raise missing("question")
        options = _options(obj)
        gold_text = obj.get("answer")
        if isinstance(gold_text, list):
            gold_text = gold_text[0] if len(gold_text) == 1 else None
        if obj.get("answer_idx") is not None:
            answer = match_label(obj["answer_idx"], options, "answer_idx")
        elif obj.get("label") is not None and "ending0" in obj:
            answer = match_index(obj["label"], options, 0, "label")
        elif gold_text is not None:
            answer = match_answer(gold_text, options)  # option text, "B" or "B. text"
        else:
            raise missing("answer_idx")
        if isinstance(gold_text, str):
            chosen = next(o["text"] for o in options if o["label"] == answer)
            if canon(chosen) != canon(gold_text) and _via_prefix(gold_text, options) != answer:
                raise Reject("answer_text_mismatch",
                             f"answer {gold_text[:120]!r} differs from option {answer} {chosen[:120]!r}")
        return {
            "source_id": text_of(obj.get("id")),
            "task": "mcq",
            "question": str(question),
            "options": options,
            "answer": answer,
            "subject": text_of(obj.get("meta_info")),
        }
