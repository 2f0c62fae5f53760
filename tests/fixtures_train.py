"""Fixtures for train/: tiny datasets from real MedQA rows, pushed to the test's local registry."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from curate import registry
from curate.build import run_build

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "train"


@pytest.fixture
def train_data(work: Path, data_dir: Path) -> dict[str, str]:
    """Datasets made by our own pipeline and pushed to the test's local registry, as the tiny recipes expect:
    ``local/demo@v1.0.0`` (`curate build demo`: chat `messages`) and ``local/demo-dpo@v1.0.0``
    (`curate build demo-dpo`: prompt / chosen / rejected). Also returns their build folders under ``<key>:build``."""
    refs: dict[str, str] = {}
    for key, recipe in (("tiny-sft-demo", "demo"), ("tiny-pref-demo", "demo-dpo")):
        build = run_build(recipe)
        pushed = registry.push(recipe, "1.0.0", build=build.path.name)
        refs[key] = f"{pushed.repo_id}@{pushed.tag}"
        refs[f"{key}:build"] = str(build.path)
    return refs


@pytest.fixture
def write_config(work: Path):
    """Write a config dict (or a shipped recipe with overrides) as YAML in the work folder."""

    def _write(name: str, data: dict | None = None, *, recipe: str | None = None, **overrides) -> Path:
        doc = yaml.safe_load((RECIPES / f"{recipe}.yaml").read_text()) if recipe else {}
        doc.update(data or {})
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(doc.get(key), dict):
                doc[key] = {**doc[key], **value}
            else:
                doc[key] = value
        path = work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    return _write


def tiny_dpo_run(work: Path, dataset: str, expected_sha256: str, *, batch: int, max_length: int) -> None:
    """Two DPO steps of the tiny random model on `dataset` (a registry ref or a build folder); the run's
    lineage must name that dataset by its content hash."""
    import json

    from train.config import validate_config
    from train.dpo import run_dpo

    cfg = validate_config("dpo", {
        "model": "tiny-random-llama", "output_dir": str(work / "dpo-out"), "datasets": [dataset],
        "training": {"max_steps": 2, "per_device_train_batch_size": batch, "learning_rate": 1e-4,
                     "max_length": max_length, "logging_steps": 1},
    })
    out = Path(run_dpo(cfg))
    lineage = json.loads((out / "medcurate_training.json").read_text())
    assert lineage["stage"] == "dpo" and lineage["metrics"]
    assert lineage["datasets"][0]["sha256"] == expected_sha256
