"""Build `curate/pack/` (the shipped benchmark pack) from the original public files in ../shared/data.

    python benchmarks/build_benchmark_pack.py [--data ../shared/data] [--out curate/pack]

Every set is read through the project's own source adapters (`curate.sources.read_source`; unlabelled rows
kept, as the MedMCQA test split has no public labels), written as one zstd parquet file per set, and
described in `index.json` with its rows, version, licence and the sha256 of each source file and of the
parquet. Rerunning on the same files gives byte-identical output (checked by tests/test_benchpack.py).
A source row the adapter rejects fails the build: a benchmark set is copied whole or not at all.

Not in the pack: MedQA's 5-option test file (no copy of it is in the shared data; only the official 4-option
test split is), HEAD-QA dev (held out) and the MMLU dev/val splits (held out / not found).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curate.fsutil import sha256_file  # noqa: E402
from curate.recipe import SourceSpec  # noqa: E402
from curate.record import SCHEMA  # noqa: E402
from curate.sources import read_source  # noqa: E402

MIRAGE = "Teddy-XiongGZ/MIRAGE@224ebe9a721e1bc525a07b10eceb01ed52df7b29"
MMLU_SUBJECTS = ("anatomy", "clinical_knowledge", "college_biology", "college_medicine", "medical_genetics",
                 "professional_medicine")


@dataclass(frozen=True)
class SetSpec:
    name: str
    benchmark: str  # also the source adapter's format name
    split: str
    files: tuple[str, ...]  # relative to the data folder, read in this order
    version: str
    license: str
    license_files: tuple[str, ...]


SETS: tuple[SetSpec, ...] = (
    SetSpec("medqa_test", "medqa", "test", ("medqa/test.jsonl",),
            f"MedQA US 4-option test, phrases_no_exclude_test.jsonl ({MIRAGE})", "MIT", ("medqa/LICENSE.MedQA",)),
    SetSpec("medmcqa_dev", "medmcqa", "dev", ("medmcqa/dev_first3683.json", "medmcqa/dev_last500.json"),
            f"MedMCQA dev.json, all 4,183 rows ({MIRAGE})", "MIT", ("medmcqa/LICENSE.MedMCQA.md",)),
    SetSpec("medmcqa_test", "medmcqa", "test", ("medmcqa/test/*_test.jsonl",),
            "MedMCQA test, unlabelled (agircc/agir-hospital-experiments@7ab9eac5ddd549172c0edaa0ca94a0012c3651ce"
            " datasets_by_subject, from HF openlifescienceai/medmcqa)", "MIT", ("medmcqa/LICENSE.MedMCQA.md",)),
    SetSpec("pubmedqa_test", "pubmedqa", "test", ("pubmedqa/test.json",),
            f"PubMedQA PQA-L test_set.json ({MIRAGE}) + test_ground_truth.json "
            "(pubmedqa/pubmedqa@3e7616d288b52edaf38f5fd5c59821c7806bde86)", "MIT", ("pubmedqa/LICENSE.PubMedQA",)),
    *(SetSpec(f"mmlu_{s}_test", "mmlu", "test", (f"mmlu_medical/test/{s}_test.csv",),
              f"MMLU (hendrycks/test data.tar) {s} test ({MIRAGE})", "MIT", ("mmlu_medical/LICENSE.MMLU",))
      for s in MMLU_SUBJECTS),
    SetSpec("headqa_test", "headqa", "test", ("headqa/test.json",),
            "HEAD-QA HEAD_EN v1.0 test_HEAD_EN.json (claudiaqw/head-qa-afi@16614f5983885c62ba9acc0f70648203b72af160)",
            "MIT, subject to the reuse conditions in README.HEAD_EN.txt",
            ("headqa/LICENSE.HEAD-QA", "headqa/README.HEAD_EN.txt")),
)


def source_files(data: Path, spec: SetSpec) -> list[Path]:
    files: list[Path] = []
    for pattern in spec.files:
        hits = sorted(data.glob(pattern))
        if not hits:
            sys.exit(f"{spec.name}: no file matches {data / pattern}")
        files.extend(hits)
    if spec.benchmark == "pubmedqa":  # the labels are read from the sibling ground-truth file
        files.extend(sorted(data.glob("pubmedqa/test_ground_truth.json")))
    return files


def build_set(data: Path, out: Path, spec: SetSpec):
    import polars as pl

    path = spec.files[0] if len(spec.files) == 1 else "{" + ",".join(spec.files) + "}"
    frames, infos = [], []
    for pattern in spec.files:  # one read per pattern, in the order given (dev first3683, then last500)
        src = SourceSpec(name=spec.name, format=spec.benchmark, path=pattern, split=spec.split)
        d = read_source(src, base_dir=data, allow_unlabelled=True)
        if d.rejected.height:
            reasons = d.rejected.group_by("reason").len().rows()
            sys.exit(f"{spec.name}: {d.rejected.height} rows of {pattern} rejected by the adapter {reasons}; "
                     "a benchmark set must be copied whole")
        frames.append(d.frame)
        infos.append(d.info)
    frame = pl.concat(frames, how="diagonal_relaxed")
    if frame["source_id"].is_duplicated().any():
        sys.exit(f"{spec.name}: duplicate item ids across {path}")
    extra = [c for c in frame.columns if c not in SCHEMA]
    frame = frame.select(*SCHEMA, *extra).with_columns(pl.lit(spec.split).alias("source_split"))
    target = out / f"{spec.name}.parquet"
    tmp = target.with_suffix(".parquet.tmp")
    frame.write_parquet(tmp, compression="zstd", compression_level=19, statistics=False)
    tmp.replace(target)
    files = source_files(data, spec)
    return {
        "name": spec.name, "benchmark": spec.benchmark, "split": spec.split, "rows": frame.height,
        "labelled": int(frame["answer"].is_not_null().sum()), "version": spec.version, "license": spec.license,
        "license_files": [f"licenses/{Path(f).name}" for f in spec.license_files],
        "file": target.name, "sha256": sha256_file(target),
        "sources": [{"path": f.relative_to(data).as_posix(), "sha256": sha256_file(f)} for f in files],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "curate" / "pack")
    args = ap.parse_args(argv)
    data, out = args.data.resolve(), args.out
    (out / "licenses").mkdir(parents=True, exist_ok=True)
    sets = [build_set(data, out, spec) for spec in SETS]
    for spec in SETS:
        for f in spec.license_files:
            shutil.copyfile(data / f, out / "licenses" / Path(f).name)
    index = {"format": 1, "built_by": "benchmarks/build_benchmark_pack.py", "sets": sets}
    tmp = out / "index.json.tmp"
    tmp.write_text(json.dumps(index, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(out / "index.json")
    width = max(len(s["name"]) for s in sets)
    for s in sets:
        print(f"{s['name']:<{width}}  {s['rows']:>6} rows  {s['labelled']:>6} labelled  {s['file']}")
    print(f"{sum(s['rows'] for s in sets)} rows in {len(sets)} sets -> {out}")


if __name__ == "__main__":
    main()
