"""The shipped benchmark pack: complete, labelled as the originals say, reproducible, and in the wheel."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from curate.benchpack import pack_dir, pack_sets, read_pack_set
from curate.record import CANONICAL_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
ROWS = {"medqa_test": 1273, "medmcqa_dev": 4183, "medmcqa_test": 6150, "pubmedqa_test": 500,
        "mmlu_anatomy_test": 135, "mmlu_clinical_knowledge_test": 265, "mmlu_college_biology_test": 144,
        "mmlu_college_medicine_test": 173, "mmlu_medical_genetics_test": 100,
        "mmlu_professional_medicine_test": 272, "headqa_test": 2742}


def test_pack_lists_every_set_with_rows_version_and_licence() -> None:
    sets = pack_sets()
    assert {s.name: s.rows for s in sets} == ROWS
    for s in sets:
        assert s.path.is_file() and s.version and s.license.startswith("MIT")
        frame = read_pack_set(s.name)
        assert frame.height == s.rows
        assert frame.columns[: len(CANONICAL_COLUMNS)] == CANONICAL_COLUMNS
        assert frame["source_id"].n_unique() == s.rows and (frame["source"] == s.name).all()
    index = json.loads((pack_dir() / "index.json").read_text())
    for entry in index["sets"]:
        for lic in entry["license_files"]:
            assert (pack_dir() / lic).is_file()
    assert "reuse" in (pack_dir() / "licenses/README.HEAD_EN.txt").read_text().lower()


def test_labels_match_the_original_files(data_dir: Path) -> None:
    truth = json.loads((data_dir / "pubmedqa/test_ground_truth.json").read_text())
    pub = read_pack_set("pubmedqa_test")
    assert dict(zip(pub["source_id"], pub["answer"], strict=True)) == truth
    assert read_pack_set("medmcqa_test")["answer"].is_null().all()  # no public labels
    dev = [json.loads(x) for f in ("dev_first3683.json", "dev_last500.json")
           for x in (data_dir / "medmcqa" / f).read_text().splitlines()]
    got = read_pack_set("medmcqa_dev")
    assert got["source_id"].to_list() == [r["id"] for r in dev]
    assert got["answer"].to_list() == ["ABCD"[r["cop"] - 1] for r in dev]
    with open(data_dir / "mmlu_medical/test/medical_genetics_test.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    mg = read_pack_set("mmlu_medical_genetics_test")
    assert mg["question"].to_list() == [r[0] for r in rows] and mg["answer"].to_list() == [r[5] for r in rows]
    medqa = [json.loads(x) for x in (data_dir / "medqa/test.jsonl").read_text().splitlines()]
    assert read_pack_set("medqa_test")["answer"].to_list() == [r["answer_idx"] for r in medqa]


def test_pack_rebuilds_byte_identical_from_the_recorded_sources(data_dir: Path, tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "benchmarks/build_benchmark_pack.py"), "--data", str(data_dir),
                    "--out", str(tmp_path)], check=True, capture_output=True)
    shipped = json.loads((pack_dir() / "index.json").read_text())
    rebuilt = json.loads((tmp_path / "index.json").read_text())
    assert rebuilt == shipped, ("curate/pack is stale (the record schema or an adapter changed): rebuild it with "
                                "`python benchmarks/build_benchmark_pack.py --data ../shared/data` and commit it")
    for entry in shipped["sets"]:
        assert hashlib.sha256((pack_dir() / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
        for src in entry["sources"]:
            assert hashlib.sha256((data_dir / src["path"]).read_bytes()).hexdigest() == src["sha256"]


@pytest.mark.slow
def test_wheel_ships_the_pack(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist")], check=True)
    wheel = next((tmp_path / "dist").glob("medcurate-*.whl"))
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import curate.benchpack as b; print(b.pack_dir()); "
            "print(sum(b.read_pack_set(s.name).height for s in b.pack_sets()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "PYTHONSAFEPATH": "1"}
                         ).stdout.split()
    assert out == [str(site / "curate/pack"), str(sum(ROWS.values()))]


def test_curate_benchmarks_lists_the_pack() -> None:
    from typer.testing import CliRunner

    from curate.cli import app

    res = CliRunner().invoke(app, ["benchmarks", "--json"])
    assert res.exit_code == 0, res.output
    listed = json.loads(res.output)
    assert {r["name"]: r["rows"] for r in listed} == ROWS
    assert all({"split", "version", "license"} <= set(r) for r in listed)
    res = CliRunner().invoke(app, ["benchmarks"])
    assert res.exit_code == 0 and "mmlu_medical_genetics_test" in res.output and "15,937 rows" in res.output
