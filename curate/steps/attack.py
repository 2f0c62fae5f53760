"""`attack`: render each unsafe request under N jailbreak attack styles (one output row per style).

Styles come from an editable YAML file (default `recipes/safety/attack_styles.yaml`: our own wording of
role play, hypothetical framing, refusal suppression, prefix injection, payload split, distraction,
authority claim, ...) and, optionally, from an imported jailbreak-prompt file (`templates:`, e.g. the
in-the-wild DAN prompts: only prompts containing the placeholder, 85 of the 666 in jailbreak_llms'
2023-05-07 file carry `[INSERT PROMPT HERE]`).

Per request: `plain` (the request as written) always, plus `n - 1` other styles chosen by a seeded rank
(sha256 of seed, row id, style name): raising `n` keeps every earlier draw, so the attacked prompts of a
smaller `n` are a subset and their teacher / policy / judge calls stay cached.

This is an expanding step (`expands = True`): every input row leaves as one or more output rows, each
with `parent_id` = the input id, so the build reconciles rows_in + rows_added = kept + rejected. Output
ids are sha256(parent id, style name, rendered prompt)[:16], unique per (request, style) and changed when
a style's text is edited. `question` keeps the plain request (the judge compares against it); the text
sent to the policy is `attack_prompt`, the style name `attack_style`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import polars as pl
import yaml
from pydantic import BaseModel, Field

from curate.errors import RecipeError
from curate.resources import recipes_dir
from curate.steps import BuildContext, Step, StepParams, StepResult, no_rejects

PLAIN = "plain"
DEFAULT_STYLES = "safety/attack_styles.yaml"


class TemplateFile(BaseModel):
    """Jailbreak prompts imported as attack templates (CSV / JSON lines / parquet with a text column)."""

    path: str
    column: str = "prompt"
    placeholder: str = "[INSERT PROMPT HERE]"
    max: int = Field(default=20, ge=1, description="templates taken (first N distinct ones holding the placeholder)")
    max_chars: int = Field(default=4000, gt=0, description="skip templates longer than this")


def resolve_file(path: str) -> Path:
    """Absolute, else relative to the working directory, else to the shipped recipes folder."""
    p = Path(path).expanduser()
    for cand in (p, Path.cwd() / p, recipes_dir() / p):
        if cand.is_file():
            return cand.resolve()
    raise RecipeError(f"attack: file {path!r} not found (looked in the working directory and {recipes_dir()})",
                      hint="give an absolute path or one relative to the working directory")


def load_styles(path: str) -> dict[str, str]:
    """name -> template with `{request}` (and optionally `{request_first_half}` / `{request_second_half}`)."""
    f = resolve_file(path)
    data = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
    styles = data.get("styles")
    if not isinstance(styles, dict) or not styles:
        raise RecipeError(f"attack: {f} has no `styles:` mapping", hint="see recipes/safety/attack_styles.yaml")
    for name, text in styles.items():
        if not isinstance(text, str) or "{request" not in text:
            raise RecipeError(f"attack: style {name!r} in {f} has no {{request}} placeholder")
    return {str(k): v for k, v in styles.items()}


def load_templates(spec: TemplateFile) -> dict[str, str]:
    """`jailbreak-<n>` -> template, the request placeholder replaced by `{request}` (braces escaped)."""
    f = resolve_file(spec.path)
    frame = pl.read_csv(f, infer_schema=False) if f.suffix == ".csv" else (
        pl.read_parquet(f) if f.suffix == ".parquet" else pl.read_ndjson(f))
    if spec.column not in frame.columns:
        raise RecipeError(f"attack: template file {f} has no column {spec.column!r}",
                          hint=f"columns are: {', '.join(frame.columns)}")
    out: dict[str, str] = {}
    for i, text in enumerate(frame[spec.column].to_list()):
        if text and spec.placeholder in text and len(text) <= spec.max_chars:
            body = text.replace("{", "{{").replace("}", "}}").replace(spec.placeholder, "{request}")
            if body not in out.values():
                out[f"jailbreak-{i}"] = body
        if len(out) >= spec.max:
            break
    return out


def render(template: str, request: str) -> str:
    words = request.split()
    half = (len(words) + 1) // 2
    return template.format(request=request, request_first_half=" ".join(words[:half]),
                           request_second_half=" ".join(words[half:]))


def rank(seed: int, row_id: str, style: str) -> bytes:
    return hashlib.sha256(f"{seed}:{row_id}:{style}".encode()).digest()


class Attack(Step):
    name = "attack"
    scope = "row"
    expands = True
    description = "each request rendered under N jailbreak attack styles (plain always one); attack_style column"

    class Params(StepParams):
        n: int = Field(default=4, ge=1, description="styles per request, `plain` included")
        styles_file: str = Field(default=DEFAULT_STYLES, description="YAML of own-wording styles")
        styles: list[str] | None = Field(default=None, description="use only these styles of the file (default all)")
        templates: TemplateFile | None = Field(default=None, description="jailbreak prompts imported as styles")
        seed: int | None = Field(default=None, description="default the recipe seed")

    params: Params

    def pool(self) -> dict[str, str]:
        p = self.params
        styles = load_styles(p.styles_file)
        if PLAIN not in styles:
            styles[PLAIN] = "{request}"
        if p.styles is not None:
            unknown = sorted(set(p.styles) - set(styles))
            if unknown:
                raise RecipeError(f"attack: unknown styles {unknown}", hint=f"known: {', '.join(sorted(styles))}")
            styles = {k: v for k, v in styles.items() if k in p.styles or k == PLAIN}
        if p.templates is not None:
            styles |= load_templates(p.templates)
        return styles

    def apply(self, frame: pl.DataFrame, ctx: BuildContext) -> StepResult:
        pool = self.pool()
        seed = self.params.seed if self.params.seed is not None else ctx.seed
        others = [s for s in pool if s != PLAIN]
        parents, styles, prompts, ids = [], [], [], []
        for row_id, request in zip(frame["id"].to_list(), frame["question"].to_list(), strict=True):
            chosen = sorted(others, key=lambda s: rank(seed, row_id, s))[: self.params.n - 1]
            for style in [PLAIN, *chosen]:
                text = render(pool[style], request)
                parents.append(row_id)
                styles.append(style)
                prompts.append(text)
                ids.append(hashlib.sha256(f"{row_id}\x1f{style}\x1f{text}".encode()).hexdigest()[:16])
        index = {rid: i for i, rid in enumerate(frame["id"].to_list())}
        out = frame[[index[r] for r in parents]].with_columns(
            pl.Series("id", ids, dtype=pl.Utf8),
            pl.Series("parent_id", parents, dtype=pl.Utf8),
            pl.Series("attack_style", styles, dtype=pl.Utf8),
            pl.Series("attack_prompt", prompts, dtype=pl.Utf8),
        ) if frame.height else frame.with_columns(
            *(pl.lit(None, dtype=pl.Utf8).alias(c) for c in ("parent_id", "attack_style", "attack_prompt")))
        counts = out.group_by("attack_style").len().sort("attack_style").rows() if out.height else []
        stats: dict[str, Any] = {
            "rows_added": out.height - frame.height,
            "styles_available": len(pool),
            "styles_file": self.params.styles_file,
            "style_versions": {k: hashlib.sha256(v.encode()).hexdigest()[:12] for k, v in sorted(pool.items())},
            "report_tables": [{"title": "Attacked prompts by style", "header": ["attack_style", "prompts"],
                               "rows": [[s, n] for s, n in counts]}],
        }
        return StepResult(kept=out, rejected=no_rejects(out), stats=stats)

