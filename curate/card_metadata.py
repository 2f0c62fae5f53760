"""Check a recipe's dataset-card metadata at load time against the lists available offline.

- `language`: the codes `datasets` ships in `datasets/utils/resources/languages.json` (ISO 639-1/3 and
  BCP-47 tags the Hub accepts, ~8,000 entries).
- `task_categories`: the keys of `datasets.utils.metadata.known_task_ids` (the Hub's task ids).
- `size_categories`: computed by `curate.card.size_category`, checked against `size_categories.json`.
- `license`: `datasets` ships no licence list, so an id is accepted when it is a lower-case SPDX licence
  id (checked with `packaging.licenses`, which `datasets` depends on) or one of the Hub's own ids below
  (the non-SPDX entries of the Hub's licence list, https://huggingface.co/docs/hub/repositories-licenses).

A bad value is a recipe error naming the key (`license: 'MIT-ish' ...`), found before any row is read
instead of when the Hub rejects the card at push time.
"""

from __future__ import annotations

import difflib
import json
from functools import cache
from pathlib import Path
from typing import Any

#: Hub licence ids that are not SPDX ids.
HUB_LICENSES = frozenset({
    "other", "unknown", "openrail", "openrail++", "bigscience-openrail-m", "creativeml-openrail-m",
    "bigscience-bloom-rail-1.0", "bigcode-openrail-m", "cc", "deepfloyd-if-license", "llama2", "llama3",
    "llama3.1", "llama3.2", "llama3.3", "llama4", "gemma", "apple-ascl", "apple-amlr", "intel-research",
    "lgpl-lr", "h-research", "fair-noncommercial-research-license", "etalab-2.0", "cdla-sharing-1.0",
    "cdla-permissive-1.0", "cdla-permissive-2.0", "c-uda", "gpl", "lgpl", "agpl-3.0", "afl-3.0",
    "cc-by-nc-sa-3.0", "cc-by-nc-nd-3.0", "cc-by-nd-4.0", "bsd", "ecl-2.0", "pddl", "odbl", "odc-by",
})


def _resources() -> Path:
    import datasets.utils

    return Path(datasets.utils.__file__).parent / "resources"


@cache
def known_languages() -> frozenset[str]:
    return frozenset(json.loads((_resources() / "languages.json").read_text(encoding="utf-8")))


@cache
def known_size_categories() -> tuple[str, ...]:
    return tuple(json.loads((_resources() / "size_categories.json").read_text(encoding="utf-8")))


@cache
def known_task_categories() -> frozenset[str]:
    from datasets.utils.metadata import known_task_ids

    return frozenset(known_task_ids)


def license_ok(value: str) -> bool:
    if value in HUB_LICENSES:
        return True
    if value != value.lower() or " " in value:
        return False
    from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression

    try:
        canonicalize_license_expression(value)
    except InvalidLicenseExpression:
        return False
    return True


def _suggest(value: str, known: Any) -> str:
    close = difflib.get_close_matches(value.lower(), list(known), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def card_metadata_problems(recipe: Any) -> list[str]:
    """`  key: message` lines for every card field of `recipe` the Hub would not accept."""
    problems = []
    if not license_ok(recipe.license):
        hint = f"; use {recipe.license.lower()!r}" if license_ok(recipe.license.lower()) else (
            _suggest(recipe.license, HUB_LICENSES | {"mit", "apache-2.0", "cc-by-4.0", "cc-by-sa-4.0",
                                                     "cc-by-nc-4.0", "cc0-1.0"})
            or "; use a lower-case SPDX id (mit, apache-2.0, cc-by-4.0, ...) or 'other'")
        problems.append(f"  license: {recipe.license!r} is not a licence id the Hub knows{hint}")
    for i, code in enumerate(recipe.language):
        if code not in known_languages():
            problems.append(f"  language.{i}: {code!r} is not a language code the Hub knows"
                            + (_suggest(code, known_languages()) or " (use ISO 639-1, e.g. 'en', 'es')"))
    for i, task in enumerate(recipe.task_categories):
        if task not in known_task_categories():
            problems.append(f"  task_categories.{i}: {task!r} is not a Hub task category"
                            + (_suggest(task, known_task_categories()) or " (e.g. 'question-answering')"))
    return problems
