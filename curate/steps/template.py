"""template: render each record into chat `messages` (TRL conversational format).

Templates are data (recipes/templates/instructions.yaml, `curate.templates`), kept per sub-task
(>= 5 each for 15 sub-tasks). The template is chosen by a seeded hash of the row id, so a rebuild gives
identical messages. Its text goes before the question in the first user turn (Aloe: "placed just before
the question"). A conversation (`turns`) keeps all its turns; only its first user turn is templated.

A template marked `explains` (it asks for an explanation or reasoning) is chosen only for rows whose
assistant target contains one: a teacher chain of thought (`cot`), a source explanation that is
appended (MCQ / yes-no-maybe with `include_explanation`), or an open answer of at least 2 sentences
and 40 words. Before issue 11, 1 of 9 MCQ and 1 of 5 PubMedQA templates asked to explain on every
row, so 11-20% of bare-answer rows were asked for an explanation they did not get.

The assistant turn is the teacher's chain of thought when present, else the gold answer in Aloe's
"Answer: [Option]" form for MCQ (`Answer: C. text`) and yes/no/maybe (`Answer: yes`), plus the source
explanation when asked; open tasks answer with the gold text.

Rendering is columnar (issue 12, `curate.steps.template_render`, rules listed there): no Python runs
per row except hashlib's sha256 of "{seed}:{id}". The issue-11 row renderer (iter_rows + str.format +
a messages list per row) is kept as the reference in tests/test_template_columnar.py; the output is
byte-identical. `benchmarks/scale.py --shapes mcq`, template seconds, same output sha before and after,
measured on the shared 2-core machine under load from other jobs (the integrator re-runs them quiet):
100k rows 3.2 s -> 0.1 s; 1M rows 32.5 s -> 1.0 s (quiet-machine figure before: 11 s). Per task shape
(`benchmarks/template_step.py`, 100k rows, median of 3): mcq 3.68 -> 0.22 s, yes/no/maybe 5.04 -> 0.37,
open QA 3.39 -> 0.35, dialogue 3.88 -> 0.34, summarization 3.99 -> 0.36 (10-16x), identical messages.
"""

from __future__ import annotations

import string

import polars as pl
from pydantic import field_validator

from curate.record import SUBTASKS, TASKS
from curate.steps import BuildContext, Step, StepParams, StepResult, no_rejects
from curate.steps.template_render import PLACEHOLDERS, check_turns, choose_templates, render_messages
from curate.templates import TABLE, TEMPLATE_VERSION, Instruction

MIN_REASONED_WORDS = 40
#: Matches once the text has MIN_REASONED_WORDS whitespace-separated words: the scan stops there
#: (counting every word with count_matches(r"\S+") took 0.75 s per 50k MedQuAD answers, this 0.06 s).
AT_LEAST_N_WORDS = rf"^\s*(?:\S+\s+){{{MIN_REASONED_WORDS - 1}}}\S"


class TemplateParams(StepParams):
    system_prompt: str | None = None
    #: Seed for template choice; default: the recipe's seed.
    seed: int | None = None
    include_explanation: bool = True
    #: Override or add templates per sub-task (or task): {"mcq": ["...{question}...{options}..."]}.
    templates: dict[str, list[str]] = {}

    @field_validator("templates")
    @classmethod
    def _check_templates(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        """Checked at recipe load, not at render time (after every step and teacher call has run)."""
        for task, texts in value.items():
            known = sorted(set(TABLE) | set(SUBTASKS) | set(TASKS))
            if task not in known:
                raise ValueError(f"unknown sub-task or task {task!r}; templates can be given for {', '.join(known)}")
            if not texts:
                raise ValueError(f"templates.{task} is empty; give at least one template or drop the key")
            for i, text in enumerate(texts):
                check_template(text, f"templates.{task}[{i}]")
        return value


def check_template(text: str, where: str) -> None:
    """A template may use only {question}, {options}, {context}, {subject}; a literal brace is `{{` / `}}`."""
    try:
        fields = [(name, conv, spec) for _, name, spec, conv in string.Formatter().parse(text) if name is not None]
    except ValueError as err:
        raise ValueError(f"{where}: {err} (write a literal brace as '{{{{' or '}}}}')") from None
    for name, conv, spec in fields:
        if name not in PLACEHOLDERS or conv or spec:
            raise ValueError(f"{where}: unknown placeholder {{{name}{'!' + conv if conv else ''}"
                             f"{':' + spec if spec else ''}}}; use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
                             " (write a literal brace as '{{' or '}}')")


def reasoned_expr(has_cot: bool, include_explanation: bool) -> pl.Expr:
    """True where the assistant target will contain an explanation or reasoning."""
    filled = lambda c: pl.col(c).fill_null("").str.strip_chars().str.len_chars() > 0  # noqa: E731
    closed = pl.col("task").is_in(["mcq", "yes_no_maybe"])
    answer = pl.col("answer").fill_null("")
    long_open = (~closed & (answer.str.count_matches(r"[.!?](\s|$)") >= 2)
                 & answer.str.contains(AT_LEAST_N_WORDS))
    out = long_open | (pl.lit(include_explanation) & closed & filled("explanation"))
    return (out | filled("cot")) if has_cot else out


class Template(Step):
    name = "template"
    scope = "row"
    Params = TemplateParams
    description = "Render records into chat `messages`: seeded per-sub-task template before the question; turns kept."

    def apply(self, frame: pl.DataFrame, ctx: BuildContext) -> StepResult:
        p: TemplateParams = self.params
        seed = ctx.seed if p.seed is None else p.seed
        table = {**TABLE, **{k: tuple(Instruction(t) for t in v) for k, v in p.templates.items()}}
        has_cot = "cot" in frame.columns
        cols = ["id", "task", "question", "context", "options", "answer", "explanation"]
        cols += [c for c in ("subtask", "subject", "turns", "cot") if c in frame.columns]
        work = frame.select(*cols, reasoned_expr(has_cot, p.include_explanation).alias("_reasoned"))
        check_turns(work)
        work = choose_templates(work, table, seed)
        messages = render_messages(work, table, has_cot=has_cot, include_explanation=p.include_explanation,
                                   system_prompt=p.system_prompt)
        kept = frame.with_columns(messages)
        chosen = work["_tid"]
        usage = chosen.value_counts(sort=True)
        used = {r[0]: r[1] for r in usage.iter_rows()}
        rows = sorted(([k, int(k.split(":")[1]), n, table[k.split(":")[0]][int(k.split(":")[1])].text[:70]]
                       for k, n in used.items()), key=lambda r: (r[0].split(":")[0], r[1]))
        stats = {
            "template_version": TEMPLATE_VERSION,
            "seed": seed,
            "system_prompt": p.system_prompt,
            "templates_used": used,
            "explaining_templates_used": sum(n for k, n in used.items()
                                             if table[k.split(":")[0]][int(k.split(":")[1])].explains),
            "report_tables": [{"title": "Templates used", "header": ["template", "index", "rows", "text"],
                               "rows": [[r[0].split(":")[0], r[1], r[2], r[3].replace("\n", " ")] for r in rows]}],
        }
        return StepResult(kept=kept, rejected=no_rejects(frame), stats=stats)
