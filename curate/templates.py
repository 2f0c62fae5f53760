"""Instruction templates (our own wording) per sub-task, kept as data in recipes/templates/instructions.yaml.

Placeholders: {question}, {options}, {context}, {subject}. An entry may be marked `explains: true`
(it asks for an explanation or reasoning): the template step picks those only for rows whose target
has one. `TEMPLATE_VERSION` is a hash of the file, recorded in the manifest, so any edit is visible.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from curate.errors import RecipeError
from curate.resources import recipes_dir


@dataclass(frozen=True)
class Instruction:
    text: str
    explains: bool = False


def templates_file() -> Path:
    return recipes_dir() / "templates" / "instructions.yaml"


@lru_cache(maxsize=4)
def load_templates(path: Path | None = None) -> tuple[dict[str, tuple[Instruction, ...]], str]:
    """({sub-task: templates}, version) from the YAML file."""
    path = path or templates_file()
    raw = path.read_bytes()
    data = yaml.safe_load(raw) or {}
    table: dict[str, tuple[Instruction, ...]] = {}
    for key, items in data.items():
        out = []
        for i, item in enumerate(items or []):
            if isinstance(item, str):
                out.append(Instruction(item))
            elif isinstance(item, dict) and isinstance(item.get("text"), str) and set(item) <= {"text", "explains"}:
                out.append(Instruction(item["text"], bool(item.get("explains", False))))
            else:
                raise RecipeError(f"{path}: {key}[{i}] must be a string or {{text, explains}}, got {item!r}")
        table[str(key)] = tuple(out)
    return table, hashlib.sha256(raw).hexdigest()[:12]


TABLE, TEMPLATE_VERSION = load_templates()
#: Plain template texts per key (the pre-issue-11 shape; `open_qa_context` kept as an alias).
TEMPLATES: dict[str, list[str]] = {k: [t.text for t in v] for k, v in TABLE.items()}
TEMPLATES["open_qa_context"] = TEMPLATES["qa_with_context"]
