"""Published versions carry their audit trail (rejects/, scores/, report) and load as data only;
main = the highest version on the Hub and in the local registry; --limit builds need --allow-partial."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import datasets
import pytest
import yaml

from curate import registry
from curate.build import run_build
from curate.registry.local import LocalRegistry
from curate.resources import recipes_dir

REPO = "acme/medqa-sft"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def real_builds(data_dir: Path, work: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """medqa-sft from MedQA train (decontaminated against the real benchmarks) and from MedQA test
    (not decontaminated: it is itself a benchmark), so the two versions differ in rows."""
    monkeypatch.setenv("MEDCURATE_BENCHMARKS", str(data_dir))
    out = [run_build("medqa-sft", source_overrides={"medqa": str(data_dir / "medqa/train_subset1030.json")}).path]
    monkeypatch.delenv("MEDCURATE_BENCHMARKS")
    recipe = yaml.safe_load((recipes_dir() / "medqa-sft.yaml").read_text())
    recipe["steps"] = [s for s in recipe["steps"] if not str(next(iter(s))).startswith("decontaminate")]
    out.append(run_build(recipe, source_overrides={"medqa": str(data_dir / "medqa/test.jsonl")}).path)
    return out


def _audit(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()
                  and p.parts[len(folder.parts)] in ("rejects", "scores", "report")
                  or p.parent == folder and p.name.startswith("report."))


def _check_version(pulled: Path, build: Path) -> None:
    audit = _audit(build)
    assert any(a.startswith("rejects/") for a in audit) and any(a.startswith("scores/") for a in audit)
    assert "report.md" in audit
    assert _audit(pulled) == audit
    for rel in audit:
        assert _sha(pulled / rel) == _sha(build / rel), rel
    # load_dataset on the version folder reads the card's configs: the data only, not the rejects
    ds = datasets.load_dataset(str(pulled))
    manifest = json.loads((pulled / "manifest.json").read_text())
    assert {s: len(d) for s, d in ds.items()} == manifest["splits"]
    assert "reason" not in ds["train"].column_names


def test_local_push_pull_carries_rejects_scores_report(real_builds: list[Path], work: Path) -> None:
    build = real_builds[0]
    registry.push("medqa-sft", "1.0.0", build=build.name)
    pulled = registry.pull("medqa-sft@v1.0.0", out=work / "pulled")
    _check_version(pulled.path, build)


def test_local_registry_folder_loads_only_the_highest_version(real_builds: list[Path], work: Path) -> None:
    train, test = real_builds
    registry.push("medqa-sft", "2.0.0", build=test.name)
    registry.push("medqa-sft", "1.0.0", build=train.name)  # an older line published later
    repo = LocalRegistry().repo_dir("local/medqa-sft")
    ds = datasets.load_dataset(str(repo))
    rows_v2 = json.loads((test / "manifest.json").read_text())["rows_out"]
    assert len(ds["train"]) == rows_v2  # not v1 + v2 (nor their rejects) concatenated
    assert registry.pull("medqa-sft@main").commit == registry.pull("medqa-sft@v2.0.0").commit


def test_hub_main_is_the_highest_version_and_pull_brings_the_trail(
        fake_hub, real_builds: list[Path], work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from curate.registry import hub as hub_mod

    monkeypatch.setattr(hub_mod, "RETRY_BASE_DELAY", 0.01)
    train, test = real_builds
    r2 = registry.push("medqa-sft", "2.0.0", build=test, to="hub", repo=REPO)
    r1 = registry.push("medqa-sft", "1.0.1", build=train, to="hub", repo=REPO)
    repo = fake_hub.repos[REPO]
    assert repo["branches"] == {"main": r2.commit}  # the side branch of v1.0.1 is gone
    assert repo["tags"] == {"v2.0.0": r2.commit, "v1.0.1": r1.commit}
    main_manifest = json.loads(fake_hub.files(REPO, "main")["manifest.json"])
    assert main_manifest["release"]["tag"] == "v2.0.0"
    pulled = registry.pull(f"{REPO}@v1.0.1", out=work / "from-hub", backend="hub")
    _check_version(pulled.path, train)
