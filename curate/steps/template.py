"""template: render each record into chat `messages` (TRL conversational format).

The template is chosen by a seeded hash of the row id, so a rebuild gives identical messages.
The assistant turn is the teacher's chain of thought (`cot`) when present, else the gold answer
(plus the source explanation when asked).
"""

from __future__ import annotations

import hashlib
import string
from typing import Any

import polars as pl
from pydantic import field_validator

from curate.record import MESSAGE
from curate.steps import BuildContext, Step, StepParams, StepResult, no_rejects, register
from curate.templates import TEMPLATE_VERSION, TEMPLATES


class TemplateParams(StepParams):
    system_prompt: str | None = None
    #: Seed for template choice; default: the recipe's seed.
    seed: int | None = None
    include_explanation: bool = True
    #: Override or add templates per task: {"mcq": ["...{question}...{options}..."]}.
    templates: dict[str, list[str]] = {}

    @field_validator("templates")
    @classmethod
    def _check_templates(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        """Checked at recipe load, not at render time (after every step and teacher call has run)."""
        for task, texts in value.items():
            if task not in TEMPLATES:
                raise ValueError(f"unknown task {task!r}; templates can be given for {', '.join(TEMPLATES)}")
            if not texts:
                raise ValueError(f"templates.{task} is empty; give at least one template or drop the key")
            for i, text in enumerate(texts):
                check_template(text, f"templates.{task}[{i}]")
        return value


PLACEHOLDERS = ("question", "options", "context")


def check_template(text: str, where: str) -> None:
    """A template may use only {question}, {options}, {context}; a literal brace is written `{{` / `}}`."""
    try:
        fields = [(name, conv, spec) for _, name, spec, conv in string.Formatter().parse(text) if name is not None]
    except ValueError as err:
        raise ValueError(f"{where}: {err} (write a literal brace as '{{{{' or '}}}}')") from None
    for name, conv, spec in fields:
        if name not in PLACEHOLDERS or conv or spec:
            raise ValueError(f"{where}: unknown placeholder {{{name}{'!' + conv if conv else ''}"
                             f"{':' + spec if spec else ''}}}; use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
                             " (write a literal brace as '{{' or '}}')")


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
        has_cot = "cot" in frame.columns
        cols = ["id", "task", "question", "context", "options", "answer", "explanation"] + (["cot"] if has_cot else [])
        messages, chosen = [], []
        for row in frame.select(cols).iter_rows(named=True):
            task = row["task"]
            key = "open_qa_context" if task == "open_qa" and row["context"] else task
            options = table.get(key) or table["open_qa"]
            idx = choose(row["id"], seed, len(options))
            user = options[idx].format(
                question=row["question"] or "",
                options=render_options(row["options"]),
                context=row["context"] or "",
            ).strip()
            if has_cot and row["cot"]:
                assistant = row["cot"]
            else:
                assistant = gold_text(row)
                if p.include_explanation and row["explanation"] and task != "open_qa":
                    assistant = f"{assistant}\n\n{row['explanation']}"
            msgs = ([{"role": "system", "content": p.system_prompt}] if p.system_prompt else []) + [
                {"role": "user", "content": user},
                {"role": "assistant", "content": assistant},
            ]
            messages.append(msgs)
            chosen.append(f"{key}:{idx}")
        kept = frame.with_columns(pl.Series("messages", messages, dtype=pl.List(MESSAGE)))
        usage = pl.Series(chosen, dtype=pl.Utf8).value_counts(sort=True)
        stats = {
            "template_version": TEMPLATE_VERSION,
            "seed": seed,
            "system_prompt": p.system_prompt,
            "templates_used": {r[0]: r[1] for r in usage.iter_rows()},
        }
        return StepResult(kept=kept, rejected=no_rejects(frame), stats=stats)
