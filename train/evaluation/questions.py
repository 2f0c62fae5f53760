"""Benchmark questions for evaluation: pack sets, the prompt a model sees, and how its answer is scored.

The one home for both, so lm-eval's task (`lm_eval_tasks/utils.py`), sc-cot and medprompt ask the same
question and score the same way. Sets come from the benchmark pack (`curate.benchpack.read_pack_set`);
until the pack is installed they are read from a folder laid out like ../shared/data through
`curate.benchsets` (config `benchmark_root` or $MEDCURATE_BENCHMARKS). Nothing is downloaded.

Scoring: synth's answer parser (`synth.parse.find_answer`, `parse_mcq`, `parse_ynm`), the one the CoT
steps use, with one fallback for zero-shot models that write only the label: the last non-empty line.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import polars as pl

from curate.errors import InputError
from synth.parse import find_answer, parse_mcq, parse_ynm

COLUMNS = ("id", "question", "context", "options", "answer", "task", "subject")


def _from_benchsets(name: str, root: str | None) -> pl.DataFrame:
    from curate.benchsets import load_benchmark

    bench, subject = name, None
    if name.startswith("mmlu_") and name != "mmlu_medical_test":
        bench, subject = "mmlu_medical_test", name.removeprefix("mmlu_").removesuffix("_test")
    loaded = load_benchmark(bench, root=root)
    if not loaded.found:
        raise InputError(f"benchmark {name}: {loaded.note}",
                         hint="install the benchmark pack (curate/pack) or set `benchmark_root` / "
                              "$MEDCURATE_BENCHMARKS to a folder laid out like ../shared/data")
    frame = loaded.frame
    return frame.filter(pl.col("subject") == subject) if subject else frame


def load_set(name: str, *, root: str | None = None, limit: int | None = None) -> pl.DataFrame:
    """The labelled questions of one pack set, in pack order, first ``limit`` of them."""
    try:
        from curate.benchpack import read_pack_set
    except ImportError:
        frame = _from_benchsets(name, root)
    else:
        frame = _from_benchsets(name, root) if root else read_pack_set(name)
    frame = frame.filter(pl.col("answer").is_not_null())
    if frame.is_empty():
        raise InputError(f"benchmark {name} has no labelled questions (an unlabelled split cannot be scored)")
    frame = frame.select([c for c in COLUMNS if c in frame.columns])
    return frame.head(limit) if limit else frame


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


def predict(text: str, row: dict[str, Any], options: list[dict[str, Any]] | None = None) -> str | None:
    """The answer a completion gives (an option label, or yes/no/maybe), None when it gives none."""
    found = find_answer(text or "")
    lines = [ln for ln in (text or "").splitlines() if ln.strip()]
    answer = found.text if found else (lines[-1] if lines else "")
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
