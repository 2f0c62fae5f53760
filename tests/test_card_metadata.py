"""Card metadata in a recipe is checked at load against the lists `datasets` ships offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from curate.card import SIZE_BUCKETS, size_category
from curate.card_metadata import known_size_categories
from curate.errors import RecipeError
from curate.recipe import list_recipes, load_recipe
from curate.resources import recipes_dir


def _recipe_with(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load((recipes_dir() / "medqa-sft.yaml").read_text())
    data.update(changes)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_bad_licence_fails_at_load_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"license: 'MIT-ish' is not a licence id"):
        load_recipe(str(_recipe_with(tmp_path, license="MIT-ish")))
    with pytest.raises(RecipeError, match=r"license: 'MIT' .*use 'mit'"):
        load_recipe(str(_recipe_with(tmp_path, license="MIT")))
    for ok in ("mit", "cc-by-nc-4.0", "other", "llama3.1"):
        assert load_recipe(str(_recipe_with(tmp_path, license=ok)))[0].license == ok


def test_bad_language_and_task_category_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as err:
        load_recipe(str(_recipe_with(tmp_path, language=["en", "english"],
                                     task_categories=["question-answering", "qa"])))
    assert "language.1: 'english'" in str(err.value) and "task_categories.1: 'qa'" in str(err.value)
    assert "language.0" not in str(err.value)


def test_shipped_recipes_and_size_categories_pass() -> None:
    for r in list_recipes():
        load_recipe(r["path"])
    labels = {label for _, label in SIZE_BUCKETS} | {size_category(10**13)}
    assert labels <= set(known_size_categories())
