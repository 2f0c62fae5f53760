"""One door for every way a recipe can be given: a name, a YAML path, a dict or a `Recipe` object.

`run_build` and the Python API (`curate.build`) both call `resolve_recipe`, so a recipe built in Python
goes through exactly the validation a YAML file does (every step's params included) and gets a
content hash: for a file the sha256 of its bytes, for an in-memory recipe the sha256 of its canonical
JSON (sorted keys), so two equal recipes built in Python share a build id prefix and provenance.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from curate.recipe import Recipe, load_recipe, validate_recipe

RecipeLike = str | Path | Recipe | Mapping[str, Any]


def recipe_dict(recipe: Recipe) -> dict[str, Any]:
    """A recipe as the YAML-shaped dict it was written from (steps as `{name: params}` entries)."""
    data = recipe.model_dump(mode="json", exclude_none=True)
    data["steps"] = [{s["name"]: s["params"]} for s in data["steps"]]
    return data


def resolve_recipe(ref: RecipeLike, *, base_dir: Path | None = None) -> tuple[Recipe, Path, str]:
    """(validated recipe, path its relative source paths resolve against, sha256).

    In-memory recipes have no file: their "path" is `<base_dir or cwd>/<name>.yaml`, which only
    serves to resolve relative source paths (nothing is read from it).
    """
    if isinstance(ref, str | Path):
        return load_recipe(str(ref))
    data = recipe_dict(ref) if isinstance(ref, Recipe) else dict(ref)
    recipe = validate_recipe(data, origin=f"<recipe {data.get('name', '?')!r} given in Python>")
    canonical = json.dumps(recipe_dict(recipe), sort_keys=True, ensure_ascii=False).encode()
    folder = Path(base_dir) if base_dir is not None else Path.cwd()
    return recipe, folder / f"{recipe.name}.yaml", hashlib.sha256(canonical).hexdigest()
