"""lm-eval hooks for the medcurate task configs in this folder: documents from the benchmark pack, the
prompt and the scoring of `train.evaluation.questions` (one home), so lm-eval and our schemes agree."""

from __future__ import annotations

from typing import Any

from train.evaluation.questions import choice_labels, is_correct, load_set, mc_prompt, predict, user_prompt


def load_docs(set_name: str, benchmark_root: str | None = None, **_: Any) -> dict[str, Any]:
    """`custom_dataset` hook: {"test": datasets.Dataset} of one pack set (lm-eval applies --limit)."""
    import datasets

    return {"test": datasets.Dataset.from_list(load_set(set_name, root=benchmark_root).to_dicts())}


def doc_to_text(doc: dict[str, Any]) -> str:
    return user_prompt(doc)


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, int]:
    return {"acc": int(is_correct(predict(results[0], doc), doc))}


# `multiple_choice` tasks (medcurate_mc_*): the log-likelihood of each answer label after `Answer:`


def mc_doc_to_text(doc: dict[str, Any]) -> str:
    return mc_prompt(doc)


def mc_doc_to_choice(doc: dict[str, Any]) -> list[str]:
    return choice_labels(doc)


def mc_doc_to_target(doc: dict[str, Any]) -> int:
    return [c.casefold() for c in choice_labels(doc)].index(str(doc["answer"]).casefold())
