"""Benchmark questions for evaluation: pack sets, the prompt a model sees, and how its answer is scored.

The one home for both, so lm-eval's task (`lm_eval_tasks/utils.py`), sc-cot and medprompt ask the same
question and score the same way. Sets come from the benchmark pack shipped in
`curate/pack` (`curate.benchpack.read_pack_set`); config `benchmark_root` reads the original files of a
folder laid out like ../shared/data instead (through `curate.benchsets`). Nothing is downloaded.

Scoring: synth's answer parser (`synth.parse.find_answer`, `parse_mcq`, `parse_ynm`), the one the CoT
steps use, with one fallback for zero-shot models that write only the label (see `predict`).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import polars as pl

from curate.errors import InputError
from synth.parse import find_answer, parse_mcq, parse_ynm

COLUMNS = ("id", "question", "context", "options", "answer", "task", "subject")


def _from_benchsets(name: str, root: str) -> pl.DataFrame:
    from curate.benchsets import load_benchmark

    loaded = load_benchmark(name, root=root, pack=False)
    if not loaded.found:
        raise InputError(f"benchmark {name}: {loaded.note}",
                         hint="set `benchmark_root` to a folder laid out like ../shared/data, or remove it "
                              "to use the shipped pack (curate/pack)")
    return loaded.frame


def load_set(name: str, *, root: str | None = None, limit: int | None = None) -> pl.DataFrame:
    """The labelled questions of one pack set, in pack order, first ``limit`` of them (``root``: read the
    original files under that folder instead of the pack)."""
    if root:
        frame = _from_benchsets(name, root)
    else:
        from curate.benchpack import read_pack_set

        frame = read_pack_set(name)
    frame = frame.filter(pl.col("answer").is_not_null())
    if frame.is_empty():
        raise InputError(f"benchmark {name} has no labelled questions (an unlabelled split cannot be scored)")
    frame = frame.select([c for c in COLUMNS if c in frame.columns])
    return frame.head(limit) if limit else frame


def pack_versions(names: list[str]) -> dict[str, dict[str, object]]:
    """Version, rows and parquet sha256 of each evaluated pack set (for eval.json)."""
    import json

    from curate.benchpack import INDEX, pack_dir

    index = {s["name"]: s for s in json.loads((pack_dir() / INDEX).read_text(encoding="utf-8"))["sets"]}
    return {n: {k: index[n].get(k) for k in ("version", "labelled", "sha256")} for n in names if n in index}


_MCQ_ASK = "Answer with the letter of the correct option on the last line, as `Answer: X`."
_YNM_ASK = "Answer yes, no or maybe on the last line, as `Answer: yes`, `Answer: no` or `Answer: maybe`."
_COT = "Think step by step, then give the final answer. "


def user_prompt(row: dict[str, Any], *, cot: bool = False, options: list[dict[str, Any]] | None = None) -> str:
    """The question as the model sees it; ``options`` replaces the row's (medprompt's shuffled order)."""
    parts = []
    if row.get("context"):
        parts.append(f"Context: {row['context']}")
    parts.append(f"Question: {row['question']}")
    ynm = row.get("task") == "yes_no_maybe"
    if not ynm:
        opts = options if options is not None else row["options"]
        parts.append("\n".join(f"{o['label']}. {o['text']}" for o in opts))
    parts.append((_COT if cot else "") + (_YNM_ASK if ynm else _MCQ_ASK))
    return "\n\n".join(parts)


def choice_labels(row: dict[str, Any]) -> list[str]:
    """The answers a log-likelihood evaluation compares: option labels, or yes/no/maybe."""
    if row.get("task") == "yes_no_maybe":
        return ["yes", "no", "maybe"]
    return [str(o["label"]) for o in row["options"]]


def mc_prompt(row: dict[str, Any]) -> str:
    """The log-likelihood form (lm-eval `multiple_choice`): the question and options, then `Answer:`."""
    parts = [f"Context: {row['context']}"] if row.get("context") else []
    parts.append(f"Question: {row['question']}")
    if row.get("task") != "yes_no_maybe":
        parts.append("\n".join(f"{o['label']}. {o['text']}" for o in row["options"]))
    return "\n\n".join(parts) + "\n\nAnswer:"


_BARE = re.compile(r"^\s*(?:[(\[]?[A-Za-z][)\].:]?|[(\[]?[A-Za-z][)\].:]\s.*|yes|no|maybe)\s*$", re.IGNORECASE)


def predict(text: str, row: dict[str, Any], options: list[dict[str, Any]] | None = None) -> str | None:
    """The answer a completion gives (an option label, or yes/no/maybe), None when it gives none.

    Without an `Answer:` line, a last line that is only a label (`B`, `(B)`, `B. Graves disease`) or
    yes/no/maybe still counts; prose such as "A patient with ..." does not (it would read as option A)."""
    found = find_answer(text or "")
    if found:
        answer = found.text
    else:
        lines = [ln for ln in (text or "").splitlines() if ln.strip()]
        answer = lines[-1] if lines and _BARE.match(lines[-1]) else ""
    if row.get("task") == "yes_no_maybe":
        return parse_ynm(answer)
    return parse_mcq(answer, options if options is not None else row["options"])


def is_correct(pred: str | None, row: dict[str, Any]) -> bool:
    return pred is not None and pred.casefold() == str(row["answer"]).casefold()


def majority(preds: list[str | None]) -> str | None:
    """Most frequent parsed answer (unparsed ones do not vote); a tie goes to the answer seen first."""
    counts = Counter(p for p in preds if p is not None)
    if not counts:
        return None
    top = max(counts.values())
    return next(p for p in preds if p is not None and counts[p] == top)
