"""template: render each record into chat `messages` (TRL conversational format).

The template is chosen by a seeded hash of the row id, so a rebuild gives identical messages.
The assistant turn is the teacher's chain of thought (`cot`) when present, else the gold answer
(plus the source explanation when asked).
"""

from __future__ import annotations

import hashlib
from typing import Any

import polars as pl

from curate.steps import BuildContext, Step, StepParams, StepResult, no_rejects, register
from curate.steps._template_render import render_messages
from curate.templates import TEMPLATE_VERSION, TEMPLATES


class TemplateParams(StepParams):
    system_prompt: str | None = None
    #: Seed for template choice; default: the recipe's seed.
    seed: int | None = None
    include_explanation: bool = True
    #: Override or add templates per task: {"mcq": ["...{question}...{options}..."]}.
    templates: dict[str, list[str]] = {}


def choose(row_id: str, seed: int, n: int) -> int:
    """Deterministic template index from (seed, id)."""
    digest = hashlib.sha256(f"{seed}:{row_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n


def render_options(options: list[dict[str, Any]] | None) -> str:
    return "\n".join(f"{o['label']}. {o['text']}" for o in options or [])


def gold_text(row: dict[str, Any]) -> str:
    """The gold answer as a sentence: `Answer: C. text` for MCQ, `Answer: yes` for yes/no/maybe."""
    if row["task"] == "mcq":
        text = next((o["text"] for o in row["options"] or [] if o["label"] == row["answer"]), "")
        return f"Answer: {row['answer']}. {text}".rstrip()
    if row["task"] == "yes_no_maybe":
        return f"Answer: {row['answer'].lower()}"
    return row["answer"] or ""


@register
class Template(Step):
    name = "template"
    scope = "row"
    Params = TemplateParams
    description = "Render records into chat `messages` with seeded template choice and optional system prompt."

    def apply(self, frame: pl.DataFrame, ctx: BuildContext) -> StepResult:
        p: TemplateParams = self.params
        seed = ctx.seed if p.seed is None else p.seed
        table = {**TEMPLATES, **p.templates}
        messages, chosen = render_messages(frame, table, seed, p.system_prompt, p.include_explanation)
        kept = frame.with_columns(messages.alias("messages"))
        usage = chosen.value_counts(sort=True)
        stats = {
            "template_version": TEMPLATE_VERSION,
            "seed": seed,
            "system_prompt": p.system_prompt,
            "templates_used": {r[0]: r[1] for r in usage.iter_rows()},
        }
        return StepResult(kept=kept, rejected=no_rejects(frame), stats=stats)
