"""Dataset recipes: YAML validated with pydantic; unknown keys are errors naming the key's path."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from curate.errors import RecipeError
from curate.resources import recipes_dir
from curate.steps import Step, get_step

log = logging.getLogger("medcurate.recipe")

#: Recipe and source names become folder and file names (builds/<name>/, rejects/source-<name>.parquet) and
#: registry names: the registry's character set, so no separator, no `..`, never empty.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
#: A recipe expands to at most this many YAML nodes once aliases are followed. Our largest recipe has ~200;
#: a 9-level "billion laughs" alias bomb has 10^9 and used to hang `curate recipes` (issue 10).
MAX_YAML_NODES = 100_000


def safe_name(value: str) -> str:
    if not SAFE_NAME.match(value) or ".." in value:
        raise ValueError(f"{value!r} is not a safe name: use 1-96 letters, digits, '.', '_' or '-', starting with "
                         "a letter or digit (no '/', no '..')")
    return value


def _expanded_nodes(node: yaml.Node, memo: dict[int, int], open_: set[int]) -> int:
    """How many nodes `node` stands for once every alias is expanded (shared nodes counted per use)."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in open_:
        raise ValueError("a YAML alias refers to itself (recursive structure)")
    open_.add(key)
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_nodes(c, memo, open_) for c in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_nodes(k, memo, open_) + _expanded_nodes(v, memo, open_) for k, v in node.value)
    else:
        size = 1
    open_.discard(key)
    memo[key] = size
    return size


def load_yaml(text: str | bytes, origin: str) -> Any:
    """`yaml.safe_load` that refuses documents whose aliases expand past MAX_YAML_NODES (alias bombs),
    recursive aliases and nesting too deep to parse; every failure is a RecipeError naming `origin`."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_nodes(node, {}, set())
        if size > MAX_YAML_NODES:
            raise RecipeError(f"{origin}: YAML aliases expand to {size:,} nodes (limit {MAX_YAML_NODES:,})",
                              hint="a recipe this large is almost certainly an alias bomb; write it out plainly")
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        raise RecipeError(f"{origin}: not valid YAML: {err}") from None
    except (ValueError, RecursionError) as err:
        raise RecipeError(f"{origin}: unusable YAML: {err if isinstance(err, ValueError) else 'nested too deeply'}"
                          ) from None
    finally:
        loader.dispose()


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
    #: Rows larger than this are rejected at the source (`row_too_large`): one 10 MB question cost 3 GB
    #: in dedup (issue 10). JSON lines: the line's bytes; CSV / JSON documents: characters.
    max_row_bytes: int = Field(default=1_000_000, gt=0)
    #: The Aloe sub-task of this source's rows (curate.record.SUBTASKS); rows an adapter labels
    #: itself (MedQuAD qtype, MedInstruct type) keep their own label. Default: derived from `task`.
    subtask: str | None = None

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return safe_name(value)

    @field_validator("subtask")
    @classmethod
    def _subtask(cls, value: str | None) -> str | None:
        from curate.record import SUBTASKS

        if value is not None and value not in SUBTASKS:
            raise ValueError(f"unknown subtask {value!r}; known: {', '.join(SUBTASKS)}")
        return value

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

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return safe_name(value)

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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        """A recipe from a YAML-shaped dict, validated like a file (step params too); errors name the key."""
        return validate_recipe(data, origin=f"<recipe {data.get('name', '?')!r} given in Python>")

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
    from curate.card_metadata import card_metadata_problems

    problems = card_metadata_problems(recipe)
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
    resolve_teacher = _teacher_resolver()
    if recipe.teacher is not None and resolve_teacher is not None:
        try:
            resolve_teacher(recipe.teacher)
        except ValidationError as err:
            problems.append(_format_validation(err, prefix="teacher."))
        except RecipeError as err:
            problems.append(f"  teacher: {err.message}")
    if problems:
        raise RecipeError(f"{origin}: invalid recipe\n" + "\n".join(problems))
    return recipe


#: Entry-point group of the function that checks a recipe's `teacher:` profile (medcurate's own is
#: `synth.config:resolve_teacher`, declared in pyproject): the curate core never imports synth by name.
TEACHER_ENTRY_POINT = "medcurate.teacher"


def _teacher_resolver() -> Any:
    import importlib.metadata

    eps = list(importlib.metadata.entry_points(group=TEACHER_ENTRY_POINT, name="resolve"))
    return eps[0].load() if eps else None


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
    data = load_yaml(raw, str(path))
    return validate_recipe(data, origin=str(path)), path, hashlib.sha256(raw).hexdigest()


def list_recipes() -> list[dict[str, str]]:
    """Shipped dataset recipes (name, description, path); training configs live in recipes/train/."""
    seen: dict[str, dict[str, str]] = {}
    for folder in (recipes_dir(), Path.cwd() / "recipes"):
        if not folder.is_dir():
            continue
        for f in sorted(folder.glob("*.yaml")):
            try:
                data = load_yaml(f.read_bytes(), str(f)) or {}
                if not isinstance(data, dict):
                    raise RecipeError(f"{f}: a recipe must be a YAML mapping")
            except (RecipeError, OSError) as err:
                log.warning("skipping recipe file %s: %s", f, err)
                continue
            seen[f.stem] = {"name": f.stem, "description": str(data.get("description", "")).strip(), "path": str(f)}
    return sorted(seen.values(), key=lambda r: r["name"])
