"""Token accounting with the tokenizer a recipe names (a tokenizer built here: no download)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from curate.build import run_build
from curate.errors import RecipeError
from curate.resources import recipes_dir


def _tokenizer(path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    corpus = ["A 45-year-old man presents with chest pain radiating to the left arm.",
              "Which of the following is the most likely diagnosis?", "Answer: B. Myocardial infarction"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]"],
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(path))
    return path


def _recipe(work: Path, tokenizer: str) -> Path:
    text = (recipes_dir() / "medqa-sft.yaml").read_text().replace("  - decontaminate: {}", "")
    path = work / "medqa-tokens.yaml"
    path.write_text(text + f"tokenizer: {tokenizer}\n")
    return path


def test_tokens_per_source_and_task_in_manifest_report_and_card(data_dir: Path, work: Path) -> None:
    from tokenizers import Tokenizer

    tok_path = _tokenizer(work / "tok.json")
    recipe = _recipe(work, "tok.json")  # relative to the recipe's folder
    res = run_build(str(recipe), source_overrides={"medqa": str(data_dir / "medqa/train_subset1030.json")},
                    out=work / "out", options={"batch_rows": 400})
    tokens = res.manifest["tokens"]
    data = pl.read_parquet(work / "out" / "data")
    tok = Tokenizer.from_file(str(tok_path))
    expected = sum(len(tok.encode("\n".join(m["content"] for m in msgs), add_special_tokens=False).ids)
                   for msgs in data["messages"].to_list())
    assert tokens["total"] == expected > data.height * 50  # byte-level BPE on a tiny vocabulary: many tokens a row
    assert tokens["rows"] == data.height
    assert tokens["by_source"] == {"medqa": expected} and tokens["by_task"] == {"mcq": expected}
    assert json.loads((work / "out" / "manifest.json").read_text())["tokens"] == tokens
    assert f"| total |  | {expected} |" in (work / "out" / "report.md").read_text()
    assert f"**{expected}**; by source: medqa {expected}" in (work / "out" / "README.md").read_text()


def test_unloadable_tokenizer_is_a_recipe_error(data_dir: Path, work: Path) -> None:
    recipe = _recipe(work, "missing/tokenizer.json")
    with pytest.raises(RecipeError, match="tokenizer 'missing/tokenizer.json' could not be loaded"):
        run_build(str(recipe), source_overrides={"medqa": str(data_dir / "medqa/train_subset1030.json")},
                  limit=20, out=work / "out")
