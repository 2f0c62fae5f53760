"""Dataset cards: YAML header the Hub and `datasets` read, values taken from the manifest and the data."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import polars as pl
import pytest
from fixtures_hub import medqa_frame, write_build
from huggingface_hub import DatasetCard

from curate.card import parse_card_header, render_dataset_card, size_category


@pytest.mark.parametrize(("rows", "label"), [
    (0, "n<1K"), (999, "n<1K"), (1_000, "1K<n<10K"), (9_999, "1K<n<10K"), (10_000, "10K<n<100K"),
    (182_822, "100K<n<1M"), (1_000_000, "1M<n<10M"), (10**12, "n>1T"),
])
def test_size_category_uses_hub_buckets(rows: int, label: str) -> None:
    assert size_category(rows) == label


@pytest.fixture
def build(tmp_path: Path, data_dir: Path) -> Path:
    frame = medqa_frame(data_dir, 0, 1030)
    teacher = {"model": "Qwen/Qwen2.5-72B-Instruct",
               "params": {"temperature": 0.7, "max_tokens": 1024, "api_key": "sk-live-abcdef123456"}}
    return write_build(tmp_path / "builds", "medqa-cot", {"train": frame.slice(0, 1010), "test": frame.slice(1010, 20)},
                       teacher=teacher)


def test_header_counts_equal_parquet_rows(build: Path) -> None:
    manifest = json.loads((build / "manifest.json").read_text())
    card = render_dataset_card(manifest, build)
    header = parse_card_header(card)
    parquet_rows = {p.name.split("-")[0]: pl.read_parquet(p).height for p in (build / "data").glob("*.parquet")}
    assert parquet_rows == {"train": 1010, "test": 20}
    assert {s["name"]: s["num_examples"] for s in header["dataset_info"]["splits"]} == parquet_rows
    assert header["size_categories"] == ["1K<n<10K"]  # 1,030 rows in all
    assert all(s["num_bytes"] > 0 for s in header["dataset_info"]["splits"])
    assert header["dataset_info"]["download_size"] == sum(p.stat().st_size for p in (build / "data").iterdir())
    assert header["license"] == "mit" and header["language"] == ["en"]
    assert header["task_categories"] == ["question-answering"] and header["pretty_name"] == "MedQA SFT"
    assert header["configs"] == [{"config_name": "default", "data_files": [
        {"split": "train", "path": "data/train-*"}, {"split": "test", "path": "data/test-*"}]}]
    # the Hub's own parser reads the same metadata
    data = DatasetCard(card).data
    assert data.size_categories == ["1K<n<10K"] and data.license == "mit"


def test_datasets_reads_the_card_and_checks_split_sizes(build: Path, tmp_path: Path) -> None:
    manifest = json.loads((build / "manifest.json").read_text())
    (build / "README.md").write_text(render_dataset_card(manifest, build))
    ds = datasets.load_dataset(str(build), cache_dir=str(tmp_path / "cache"))
    assert {s: len(d) for s, d in ds.items()} == {"train": 1010, "test": 20}
    # a card whose counts disagree with the data is caught by datasets' split verification
    wrong = dict(manifest, splits={"train": 1011, "test": 20})
    (build / "README.md").write_text(render_dataset_card(wrong, build))
    with pytest.raises(datasets.exceptions.NonMatchingSplitsSizesError):
        datasets.load_dataset(str(build), cache_dir=str(tmp_path / "cache2"))


def test_provenance_sections_come_from_the_manifest(build: Path) -> None:
    manifest = json.loads((build / "manifest.json").read_text())
    card = render_dataset_card(manifest)
    assert manifest["recipe"]["sha256"] in card and manifest["output"]["sha256"] in card
    for step in manifest["steps"]:
        row = f"| {step['name']} | {step['rows_in']} | {step['rows_kept']} | {step['rows_rejected']} |"
        assert row in card
    assert "answer_not_in_options (2), empty_question (1)" in card
    bench = manifest["steps"][2]["stats"]["benchmarks"]["medqa_test"]
    assert f"| medqa_test | yes | 1273 | {bench['checked']} | 2 | {bench['hit_rate']:.2%} |" in card
    assert "| headqa_test | **not found**: no files matching headqa/test.json | 0 | 0 | 0 | 0.00% |" in card
    assert "min_short_tokens=`4`" in card  # a parameter named like "tokens" is not a secret
    assert "param num_perm: `128`" in card and "stat bands: `16`" in card
    assert "Model: `Qwen/Qwen2.5-72B-Instruct`" in card and "temperature: `0.7`" in card
    assert "sk-live-abcdef123456" not in card  # secrets in teacher params are redacted
    # the file's name (never a local path) and its split: none recorded here, so "unknown", never "train"
    assert (f"| medqa | medqa | train_subset1030.json | unknown | — | `{'a' * 16}` | mit | {manifest['rows_in']} |"
            in card)
    assert 'load_dataset("local/medqa-cot", revision="<version>")' in card  # not yet pushed: placeholder


def test_release_card_names_repo_and_tag(build: Path) -> None:
    manifest = json.loads((build / "manifest.json").read_text())
    manifest["teacher"] = None
    manifest["release"] = {"repo": "acme/medqa-cot", "version": "1.2.0", "tag": "v1.2.0",
                           "pushed": "2026-11-21T13:00:00+00:00"}
    card = render_dataset_card(manifest)
    assert 'load_dataset("acme/medqa-cot", revision="v1.2.0")' in card
    assert 'curate.load("acme/medqa-cot@v1.2.0")' in card
    assert "### Teacher" not in card and "<version>" not in card
