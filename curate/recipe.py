"""Dataset recipes: YAML validated with pydantic; unknown keys are errors naming the key's path."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from curate.errors import RecipeError
from curate.resources import recipes_dir
from curate.steps import Step, get_step


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ColumnMap(_Strict):
    """Column mapping for the `generic` adapter (jsonl / json / parquet / csv / Hub)."""

    question: str
    options: list[str] | str | None = None  # several columns (one per option) or one list/dict column
    option_labels: list[str] | None = None  # labels for `options` columns; default A, B, C, ...
    answer: str
    answer_format: Literal["label", "index0", "index1", "text"] = "label"
    context: str | None = None
    explanation: str | None = None
    subject: str | None = None
    id: str | None = None
    task: Literal["mcq", "yes_no_maybe", "open_qa", "dialogue", "summarization"] | None = None


class SourceSpec(_Strict):
    """One source: a local path (file, folder or glob) and/or a Hub dataset (`org/name@revision`)."""

    name: str
    format: str  # adapter name: medqa, medmcqa, pubmedqa, headqa, mmlu, generic, preference, ...
    path: str | None = None
    hub: str | None = None
    config: str | None = None  # Hub config (subset) name
    split: str = "train"
    columns: ColumnMap | None = None
    license: str | None = None
    weight: float = 1.0

    @model_validator(mode="after")
    def _where(self) -> SourceSpec:
        if not self.path and not self.hub:
            raise ValueError(f"source {self.name!r} needs `path` or `hub`")
        if self.format == "generic" and self.columns is None:
            raise ValueError(f"source {self.name!r} with format 'generic' needs a `columns` mapping")
        return self

    @property
    def hub_repo(self) -> tuple[str, str | None] | None:
        if not self.hub:
            return None
        repo, _, rev = self.hub.partition("@")
        return repo, rev or None


class OutputSpec(_Strict):
    split: str = "train"
    max_rows_per_shard: int = Field(default=250_000, gt=0)


class StepSpec(BaseModel):
    """One step as written in YAML: `- name: {params}`; validated against the step's Params."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    def build(self) -> Step:
        return get_step(self.name)(self.params)


class Recipe(_Strict):
    name: str
    description: str
    license: str
    pretty_name: str | None = None
    language: list[str] = Field(default_factory=lambda: ["en"])
    task_categories: list[str] = Field(default_factory=lambda: ["question-answering"])
    tags: list[str] = Field(default_factory=lambda: ["medical"])
    seed: int = 0
    sources: list[SourceSpec]
    steps: list[StepSpec]
    teacher: str | dict[str, Any] | None = None  # profile name under recipes/teachers/ or inline profile
    tokenizer: str | None = None  # count output tokens with it: tokenizer.json path (relative to the recipe) or Hub id
    output: OutputSpec = Field(default_factory=OutputSpec)

    @field_validator("steps", mode="before")
    @classmethod
    def _steps(cls, value: Any) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            raise ValueError("`steps` must be a list of `- step_name: {params}` entries")
        out = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                item = {item: {}}
            if not isinstance(item, dict) or len(item) != 1:
                raise ValueError(f"steps[{i}] must be a single `step_name: {{params}}` mapping, got {item!r}")
            (name, params), = item.items()
            out.append({"name": name, "params": params or {}})
        return out

    @field_validator("sources")
    @classmethod
    def _unique_sources(cls, value: list[SourceSpec]) -> list[SourceSpec]:
        names = [s.name for s in value]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"source names must be unique, repeated: {sorted(dup)}")
        return value


def _format_validation(err: ValidationError, prefix: str = "") -> str:
    lines = []
    for e in err.errors():
        loc = prefix + ".".join(str(p) for p in e["loc"])
        msg = "unknown key (check spelling; see the recipe docs)" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def validate_recipe(data: dict[str, Any], origin: str = "<recipe>") -> Recipe:
    """Validate a recipe dict, including every step's params; raise RecipeError naming key paths."""
    if not isinstance(data, dict):
        raise RecipeError(f"{origin}: a recipe must be a YAML mapping")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        raise RecipeError(f"{origin}: invalid recipe\n{_format_validation(err)}") from None
    problems = []
    for i, spec in enumerate(recipe.steps):
        try:
            step_cls = get_step(spec.name)
        except KeyError as err:
            problems.append(f"  steps.{i}.{spec.name}: {err.args[0]}")
            continue
        try:
            step_cls.Params.model_validate(spec.params)
        except ValidationError as err:
            problems.append(_format_validation(err, prefix=f"steps.{i}.{spec.name}."))
    if recipe.teacher is not None:
        try:
            from synth.config import resolve_teacher

            resolve_teacher(recipe.teacher)
        except ValidationError as err:
            problems.append(_format_validation(err, prefix="teacher."))
        except RecipeError as err:
            problems.append(f"  teacher: {err.message}")
    if problems:
        raise RecipeError(f"{origin}: invalid recipe\n" + "\n".join(problems))
    return recipe


def find_recipe(name_or_path: str) -> Path:
    """A recipe by path, or by name in ./recipes/ then in the shipped recipes."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    for folder in (Path.cwd() / "recipes", recipes_dir()):
        cand = folder / f"{name_or_path}.yaml"
        if cand.is_file():
            return cand
    known = ", ".join(r["name"] for r in list_recipes())
    raise RecipeError(f"no recipe named {name_or_path!r}", hint=f"known recipes: {known}; or pass a .yaml path")


def load_recipe(name_or_path: str) -> tuple[Recipe, Path, str]:
    """Load and validate a recipe. Returns (recipe, path, sha256 of the file bytes)."""
    path = find_recipe(name_or_path)
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise RecipeError(f"{path}: not valid YAML: {err}") from None
    return validate_recipe(data, origin=str(path)), path, hashlib.sha256(raw).hexdigest()


def list_recipes() -> list[dict[str, str]]:
    """Shipped dataset recipes (name, description, path); training configs live in recipes/train/."""
    seen: dict[str, dict[str, str]] = {}
    for folder in (recipes_dir(), Path.cwd() / "recipes"):
        if not folder.is_dir():
            continue
        for f in sorted(folder.glob("*.yaml")):
            try:
                data = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError:
                data = {}
            seen[f.stem] = {"name": f.stem, "description": str(data.get("description", "")).strip(), "path": str(f)}
    return sorted(seen.values(), key=lambda r: r["name"])
