"""Token accounting with the tokenizer a recipe names (a tokenizer built here: no download)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from curate.build import run_build
from curate.composition import composition
from curate.errors import RecipeError
from curate.recipe import SourceSpec
from curate.resources import recipes_dir
from curate.sources import read_source
from curate.tokens import ESTIMATE, row_text_expr, row_tokens, token_counter


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


# --- one text rule, one tokenizer: manifest `tokens`, `composition` and `row_tokens` agree -----------------

ROLES = {"human": "user", "gpt": "assistant", "system": "system"}


def _pairs(data_dir: Path, path: Path, n: int = 40) -> Path:
    """LLaMA-Factory's real DPO demo pairs as prompt / chosen / rejected JSON lines (the `preference` layout)."""
    rows = json.loads((data_dir / "preference/llama-factory/dpo_en_demo.json").read_text())[:n]
    with path.open("w") as f:
        for r in rows:
            prompt = [{"role": ROLES[t["from"]], "content": t["value"]} for t in r["conversations"]]
            f.write(json.dumps({"prompt": prompt, "chosen": r["chosen"]["value"], "rejected": r["rejected"]["value"]}) + "\n")
    return path


def _mixed_recipe(data_dir: Path, work: Path, *, template: bool, tokenizer: str | None) -> Path:
    """MCQ fields, ShareGPT conversations (turns) and preference pairs in one real build."""
    recipe: dict[str, Any] = {
        "name": "tokens-mixed", "description": "fields, turns and pairs", "license": "other",
        "sources": [
            {"name": "medqa", "format": "medqa", "path": str(data_dir / "medqa/train_subset1030.json")},
            {"name": "chats", "format": "sharegpt", "path": str(data_dir / "chat-formats/fastchat/dummy_conversation.json"),
             "subtask": "general_chat"},
            {"name": "pairs", "format": "preference", "path": str(_pairs(data_dir, work / "pairs.jsonl"))},
        ],
        "steps": [{"normalize": {}}, {"validate": {}}, *([{"template": {}}] if template else [])],
    }
    if tokenizer:
        recipe["tokenizer"] = tokenizer
    path = work / "tokens-mixed.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _expected_text(row: dict[str, Any]) -> str:
    """The documented rule, written out row by row: pair, else messages, else turns, else the fields."""
    def contents(msgs: list[dict[str, str]] | None) -> str:
        return "\n".join(m["content"] for m in msgs or [])

    pair = [t for t in (contents(row.get(c)) for c in ("prompt", "chosen", "rejected")) if t]
    if pair:
        return "\n".join(pair)
    for col in ("messages", "turns"):
        if row.get(col):
            return contents(row[col])
    opts = "\n".join(o["text"] for o in row.get("options") or [])
    return "\n".join(t for t in (row.get("question"), row.get("context"), opts, row.get("answer")) if t)


def test_manifest_composition_and_row_tokens_agree_with_the_recipe_tokenizer(data_dir: Path, work: Path) -> None:
    """Before: the manifest counted with the recipe's tokenizer, the composition tables with the estimate."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(_tokenizer(work / "tok.json")))
    res = run_build(str(_mixed_recipe(data_dir, work, template=True, tokenizer="tok.json")), out=work / "out",
                    options={"batch_rows": 300})
    m, out = res.manifest, pl.read_parquet(work / "out" / "data")
    assert {"messages", "prompt", "chosen", "rejected"} <= set(out.columns) and out.height == m["rows_out"]
    want = [len(tok.encode(_expected_text(r), add_special_tokens=False).ids) for r in out.iter_rows(named=True)]
    comp, tokens = m["composition"], m["tokens"]
    assert tokens["total"] == sum(want) == int(row_tokens(out, str(work / "tok.json")).sum())
    assert tokens["rows"] == out.height and comp["tokens"] == tokens["tokenizer"] == "tok.json"
    for key in ("source", "subtask"):
        assert {i["name"]: i["tokens"] for i in comp[f"by_{key}"]} == tokens[f"by_{key}"]
        assert sum(i["tokens"] for i in comp[f"by_{key}"]) == sum(want)
    per_source = out.with_columns(pl.Series("t", want)).group_by("source").agg(pl.col("t").sum())
    assert tokens["by_source"] == dict(per_source.iter_rows()) and set(tokens["by_source"]) == {"medqa", "chats", "pairs"}
    pairs = out.filter(pl.col("source") == "pairs")
    assert pairs["messages"].list.len().min() > 0  # templated too: the pair, not the template, is counted
    total_row = f"| **total** | {m['rows_out']} | 100% | {sum(want)} | 100% |"
    assert total_row in (work / "out" / "report.md").read_text() and total_row in (work / "out" / "README.md").read_text()


def test_estimate_without_a_tokenizer_and_the_tokenizer_option(data_dir: Path, work: Path) -> None:
    recipe = _mixed_recipe(data_dir, work, template=False, tokenizer=None)
    m = run_build(str(recipe), out=work / "est").manifest
    out = pl.read_parquet(work / "est" / "data")
    assert "messages" not in out.columns and (out["turns"].list.len() > 0).sum() > 0  # the turns rule is used
    words = pl.Series([_expected_text(r) for r in out.iter_rows(named=True)]).str.count_matches(ESTIMATE).to_list()
    assert "tokens" not in m and m["composition"]["tokens"].startswith("estimate")
    assert sum(i["tokens"] for i in m["composition"]["by_source"]) == sum(words) == int(row_tokens(out).sum())
    # `--tokenizer` (the build option) counts exactly, in the manifest and the tables alike
    _tokenizer(work / "cli.json")
    m = run_build(str(recipe), out=work / "cli", options={"tokenizer": "cli.json"}).manifest
    assert m["tokens"]["tokenizer"] == m["composition"]["tokens"] == "cli.json"
    assert m["tokens"]["total"] == sum(i["tokens"] for i in m["composition"]["by_subtask"]) > sum(words)


def test_token_mix_counts_with_the_recipe_tokenizer(data_dir: Path, work: Path) -> None:
    """`mix: {unit: tokens}` without its own tokenizer uses the build's: its kept tokens are the manifest's."""
    for name, source, rel in (("med", "chatdoctor", "dialogue/chatdoctor/genmedgpt5k_first4000.json"),
                              ("gen", "data", "chat-formats/fastchat/dummy_conversation.json")):
        recipe = {"chatdoctor": "chatdoctor-sft", "data": "sharegpt-sft"}[source]
        run_build(recipe, source_overrides={source: str(data_dir / rel)}, out=work / name, limit=300)
    _tokenizer(work / "tok.json")
    mix = {"name": "token-mix", "description": "0.8 : 0.2 in tokens", "license": "other", "tokenizer": "tok.json",
           "sources": [{"name": "med", "format": "build", "path": str(work / "med"), "weight": 0.8},
                       {"name": "gen", "format": "build", "path": str(work / "gen"), "weight": 0.2}],
           "steps": [{"mix": {"unit": "tokens"}}]}
    (work / "mix.yaml").write_text(yaml.safe_dump(mix))
    m = run_build(str(work / "mix.yaml"), out=work / "mix").manifest
    groups = m["steps"][-1]["stats"]["groups"]
    assert {g: v["tokens_kept"] for g, v in groups.items()} == m["tokens"]["by_source"]
    assert sum(v["tokens_kept"] for v in groups.values()) == m["tokens"]["total"]
    assert "estimated" not in m["steps"][-1]["stats"]["report_tables"][0]["title"]


# --- the text rule and the tokenizer loader ------------------------------------------------------------------


def test_text_rule_on_real_rows(data_dir: Path, work: Path) -> None:
    frames = [read_source(SourceSpec(name=n, format=f, path=str(p)), base_dir=work).frame for n, f, p in (
        ("medqa", "medqa", data_dir / "medqa/train_subset1030.json"),
        ("chats", "sharegpt", data_dir / "chat-formats/fastchat/dummy_conversation.json"),
        ("pairs", "preference", _pairs(data_dir, work / "pairs.jsonl")))]
    frame = pl.concat(frames, how="diagonal_relaxed")
    text = frame.select(row_text_expr(frame.schema).alias("t"))["t"].to_list()
    assert text == [_expected_text(r) for r in frame.iter_rows(named=True)]
    medqa = frames[0].row(0, named=True)
    assert text[0] == "\n".join([medqa["question"], *(o["text"] for o in medqa["options"]), medqa["answer"]])
    # a preference row that was also templated counts its pair (what DPO trains on)
    both = frames[2].head(3).with_columns(pl.col("prompt").alias("messages"))
    assert both.select(row_text_expr(both.schema))[:, 0].to_list() == [_expected_text(r) for r in frames[2].head(3).iter_rows(named=True)]


def test_tokenizer_from_a_folder_and_from_the_local_hub_cache(data_dir: Path, work: Path, monkeypatch) -> None:
    import huggingface_hub.constants

    frame = read_source(SourceSpec(name="s", format="medqa", path=str(data_dir / "medqa/train_subset1030.json")),
                        base_dir=work).frame.head(50)
    want = row_tokens(frame, str(_tokenizer(work / "tok.json")))
    folder = work / "saved"
    folder.mkdir()
    (folder / "tokenizer.json").write_bytes((work / "tok.json").read_bytes())
    assert row_tokens(frame, "saved").to_list() == want.to_list()  # a folder (relative to the cwd)
    assert composition(frame, [], "saved")["by_source"][0]["tokens"] == int(want.sum())
    # a Hub id read from the local cache (the layout huggingface_hub writes), never downloaded
    cache = work / "hub"
    snap = cache / "models--org--tiny-bpe" / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "tokenizer.json").write_bytes((work / "tok.json").read_bytes())
    (cache / "models--org--tiny-bpe" / "refs").mkdir()
    (cache / "models--org--tiny-bpe" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    counter = token_counter("org/tiny-bpe")
    assert counter.exact and counter.name == "org/tiny-bpe" and row_tokens(frame, counter).to_list() == want.to_list()
    assert token_counter(f"org/tiny-bpe@{'a' * 40}").path == counter.path
    with pytest.raises(RecipeError, match="no Hub model 'org/absent' with a tokenizer.json in the local"):
        token_counter("org/absent")
    with pytest.raises(RecipeError, match="no Hub model 'org--x'"):  # not a valid repo id: the same error
        token_counter("org--x")
    (work / "empty").mkdir()
    with pytest.raises(RecipeError, match="has no tokenizer.json"):
        token_counter("empty")
    (work / "bad.json").write_text("{}")
    with pytest.raises(RecipeError, match="could not be loaded"):
        token_counter("bad.json")
