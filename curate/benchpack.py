"""The benchmark pack shipped with medcurate: benchmark test sets as canonical-record parquet files.

`curate/pack/` holds one parquet file per set plus `index.json` (name, benchmark, split, rows, version,
licence, source files with their sha256, the parquet's sha256) and the upstream licence files under
`curate/pack/licenses/` (with HEAD-QA's reuse conditions). It is built reproducibly from the original public
files by `benchmarks/build_benchmark_pack.py` through the source adapters, and it is the one place where
copies of benchmark data live in the project. `decontaminate` checks against it by default (no set-up, no
download) and the evaluation code reads the same sets.

Sets (15,937 rows in all): medqa_test (1,273, the 4-option USMLE test; no 5-option file is available in the
shared data), medmcqa_dev (4,183: what MultiMedQA/MIRAGE report as MedMCQA "test"), medmcqa_test (6,150,
no public labels: `answer` is null), pubmedqa_test (500, labels from test_ground_truth.json), the six
mmlu_<subject>_test sets (1,089 in all) and headqa_test (2,742, English, 4 options).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import polars as pl

from curate.errors import InputError
from curate.record import ADDED_COLUMNS, SCHEMA

_PKG = Path(__file__).resolve().parent
INDEX = "index.json"


@dataclass(frozen=True)
class PackSet:
    name: str  # e.g. medqa_test, mmlu_anatomy_test
    benchmark: str  # medqa, medmcqa, pubmedqa, mmlu, headqa
    split: str  # the benchmark's own split name (MedMCQA dev is `dev`)
    rows: int
    version: str  # upstream release and the commit the source file was taken at
    license: str
    path: Path  # the parquet file


def pack_dir() -> Path:
    """The shipped pack folder (inside the `curate` package, so it is in the wheel and the checkout)."""
    return _PKG / "pack"


@lru_cache(maxsize=4)
def _index(folder: Path) -> dict:
    path = folder / INDEX
    if not path.is_file():
        raise InputError("the benchmark pack index is missing", file=str(path),
                         hint="rebuild it: python benchmarks/build_benchmark_pack.py --data ../shared/data")
    return json.loads(path.read_text())


def pack_sets(folder: Path | None = None) -> list[PackSet]:
    """Every set in the pack, in index order."""
    folder = folder or pack_dir()
    return [PackSet(name=s["name"], benchmark=s["benchmark"], split=s["split"], rows=s["rows"],
                    version=s["version"], license=s["license"], path=folder / s["file"])
            for s in _index(folder)["sets"]]


def pack_set(name: str, folder: Path | None = None) -> PackSet:
    sets = {s.name: s for s in pack_sets(folder)}
    if name not in sets:
        raise InputError(f"no benchmark set {name!r} in the pack", hint=f"known sets: {', '.join(sets)}")
    return sets[name]


def read_pack_set(name: str, folder: Path | None = None) -> pl.DataFrame:
    """One set as canonical records (`source` = the set name, `source_id` = the benchmark's own item id,
    `answer` = the gold label, yes/no/maybe for PubMedQA, null where unlabelled).

    Columns the record schema gained after the pack was built are added as nulls, so an older pack still
    reads as the current schema; the added columns a step may use (e.g. `subject`) are kept when present.
    """
    s = pack_set(name, folder)
    frame = pl.read_parquet(s.path)
    schema = dict(SCHEMA)
    missing = [pl.lit(None, dtype=dt).alias(c) for c, dt in schema.items() if c not in frame.columns]
    frame = frame.with_columns(missing) if missing else frame
    extra = [c for c in frame.columns if c not in schema and c in ADDED_COLUMNS]
    return frame.select(*schema, *extra)
