"""Registry of benchmark test sets that training data must not contain (used by `decontaminate`).

The sets are the shipped benchmark pack's (`curate.benchpack`: medqa_test, medmcqa_dev, medmcqa_test,
pubmedqa_test, the six mmlu_<subject>_test, headqa_test), so decontamination works with no set-up and no
download. Each set is loaded from, in this order: a per-set path (`paths: {name: path}` in the step
params), a root folder (`root:` param, else the ``MEDCURATE_BENCHMARKS`` environment variable) laid out like
``../shared/data`` (see `BENCHMARKS[*].patterns`) when it holds the set's files, the shipped pack, or -
only when the recipe says ``hub: true`` and the pack is switched off (`pack: false`) - the Hugging Face
Hub. `extra: {name: {format, path}}` adds sets of the user's own. Local files are parsed by the source
adapters (`curate.sources.read_source`), so parsing lives in one place. `mmlu_medical_test` still names
the six MMLU sets together (`GROUPS`).
"""

from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import Field, field_validator

from curate.record import to_frame
from curate.steps.base import StepParams

log = logging.getLogger("medcurate")

ENV_ROOT = "MEDCURATE_BENCHMARKS"


@dataclass(frozen=True)
class Benchmark:
    name: str
    format: str  # source adapter name
    patterns: tuple[str, ...]  # globs under the root folder
    hub: str | None = None  # Hub dataset repo (used only with `hub: true`)
    hub_config: str | None = None
    hub_split: str = "test"
    description: str = ""


MMLU_MEDICAL = ("anatomy", "clinical_knowledge", "college_biology", "college_medicine", "medical_genetics",
                "professional_medicine")

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("medqa_test", "medqa", ("medqa/test.jsonl", "medqa/test*.jsonl"),
                  hub="GBaker/MedQA-USMLE-4-options", description="MedQA USMLE 4-option test (1,273)"),
        Benchmark("medmcqa_dev", "medmcqa", ("medmcqa/dev*.json", "medmcqa/dev*.jsonl"),
                  hub="openlifescienceai/medmcqa", hub_split="validation",
                  description="MedMCQA dev (4,183; reported as 'test' by MultiMedQA/MIRAGE)"),
        Benchmark("medmcqa_test", "medmcqa", ("medmcqa/test/*.jsonl", "medmcqa/test.json*"),
                  hub="openlifescienceai/medmcqa", description="MedMCQA test (6,150, no public labels)"),
        Benchmark("pubmedqa_test", "pubmedqa", ("pubmedqa/test.json", "pubmedqa/test_set.json"),
                  hub="qiaojin/PubMedQA", hub_config="pqa_labeled", hub_split="train",
                  description="PubMedQA PQA-L test (500)"),
        *(Benchmark(f"mmlu_{s}_test", "mmlu", (f"mmlu_medical/test/{s}_test.csv", f"mmlu/test/{s}_test.csv"),
                    hub="cais/mmlu", hub_config=s, description=f"MMLU {s.replace('_', ' ')}, test")
          for s in MMLU_MEDICAL),
        Benchmark("headqa_test", "headqa", ("headqa/test.json", "headqa/test_HEAD_EN.json"),
                  hub="head_qa", hub_config="en", description="HEAD-QA (English) test (2,742)"),
    )
}

#: Names that stand for several sets (the pre-pack MMLU set was one benchmark).
GROUPS: dict[str, tuple[str, ...]] = {"mmlu_medical_test": tuple(f"mmlu_{s}_test" for s in MMLU_MEDICAL)}


def expand(names: list[str]) -> list[str]:
    """Set names with groups expanded, in order, without repeats."""
    out: list[str] = []
    for n in names:
        for m in GROUPS.get(n, (n,)):
            if m not in out:
                out.append(m)
    return out


def _pack_file(name: str) -> Path | None:
    from curate.benchpack import pack_sets

    try:
        return next((s.path for s in pack_sets() if s.name == name and s.path.is_file()), None)
    except (OSError, ValueError):  # no or unreadable pack: the set is simply not found there
        return None


@dataclass
class LoadedBenchmark:
    name: str
    found: bool
    frame: pl.DataFrame  # canonical rows; `source_id` is the benchmark's own id for each row
    where: str | None = None  # path(s) or hub repo it came from
    note: str | None = None  # why it was not found


def resolve_files(bench: Benchmark, *, root: Path | None, path: str | None) -> list[Path]:
    """Local files for a benchmark: an explicit path (file, folder or glob) or the root-folder layout."""
    if path:
        p = Path(path).expanduser()
        if p.is_file():
            return [p]
        if p.is_dir():
            return sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in (".json", ".jsonl", ".csv"))
        return sorted(Path(f) for f in glob.glob(str(p)) if Path(f).is_file())
    if root is None:
        return []
    files: list[Path] = []
    for pattern in bench.patterns:  # first matching pattern wins, except MMLU (one file per subject)
        hits = [f for f in sorted(root.glob(pattern)) if f.is_file() and f not in files]
        if hits and bench.format != "mmlu":
            return hits
        files.extend(hits)
    return files


def default_root(root: str | None) -> Path | None:
    value = root or os.environ.get(ENV_ROOT)
    return Path(value).expanduser() if value else None


def file_key(name: str, *, root: str | None = None, path: str | None = None, pack: bool = True,
             bench: Benchmark | None = None) -> tuple | None:
    """(path, mtime_ns, size) of each local file (or the pack file) a benchmark would load from; None when
    it has none (not found, or only on the Hub)."""
    files = _local_files(bench or BENCHMARKS[name], root=root, path=path, pack=pack)
    if not files:
        return None
    return tuple((str(f.resolve()), f.stat().st_mtime_ns, f.stat().st_size) for f in files)


def _local_files(bench: Benchmark, *, root: str | None, path: str | None, pack: bool) -> list[Path]:
    files = resolve_files(bench, root=default_root(root), path=path)
    if not files and pack and not path:
        packed = _pack_file(bench.name)
        files = [packed] if packed else []
    return files


def load_benchmark(name: str, *, root: str | None = None, path: str | None = None, hub: bool = False,
                   pack: bool = True, bench: Benchmark | None = None) -> LoadedBenchmark:
    """Load one benchmark's rows (canonical frame): per-set path, root folder, the shipped pack, or the Hub
    (only when `hub` is true and the set was found nowhere else). `bench` describes a user's own set."""
    bench = bench or BENCHMARKS[name]
    files = _local_files(bench, root=root, path=path, pack=pack)
    if files:
        key = tuple((str(f.resolve()), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
        frame = _load_files(bench, key)
        where = (f"pack:{files[0].name}" if files[0].suffix == ".parquet" and files[0].parent == _pack_dir()
                 else ", ".join(str(f) for f in files))
        return LoadedBenchmark(name, True, frame, where=where)
    if hub and bench.hub:
        try:
            return LoadedBenchmark(name, True, _load_hub(bench), where=f"hub:{bench.hub}")
        except Exception as err:  # noqa: BLE001 - reported as not found, with the reason
            return LoadedBenchmark(name, False, to_frame([]), note=f"hub {bench.hub}: {err}")
    where = path or (str(default_root(root)) if default_root(root) else None)
    note = (f"no files matching {', '.join(bench.patterns)} under {where}" if where and not path
            else f"no file at {path}" if path
            else f"not in the pack and no benchmark root: set the step param `root` or ${ENV_ROOT}" if pack
            else f"the pack is off (`pack: false`) and no benchmark root: set the step param `root` or ${ENV_ROOT}")
    return LoadedBenchmark(name, False, to_frame([]), note=note)


def _pack_dir() -> Path:
    from curate.benchpack import pack_dir

    return pack_dir()


@lru_cache(maxsize=32)
def _load_files(bench: Benchmark, key: tuple[tuple[str, int, int], ...]) -> pl.DataFrame:
    frames = [_read_file(bench, Path(f)) for f, _, _ in key]
    frame = pl.concat(frames, how="diagonal_relaxed") if frames else to_frame([])
    return frame.with_columns(pl.lit(bench.name).alias("source"), pl.lit("test").alias("source_split"))


def _read_file(bench: Benchmark, path: Path) -> pl.DataFrame:
    """Rows of one benchmark file via its source adapter. Unlabelled rows (the MedMCQA test split) are kept:
    they are still benchmark questions that training data must not contain."""
    from curate.recipe import SourceSpec
    from curate.sources import read_source

    if path.suffix == ".parquet" and path.parent == _pack_dir():
        from curate.benchpack import read_pack_set

        return read_pack_set(bench.name)
    spec = SourceSpec(name=bench.name, format=bench.format, path=str(path), split="test")
    data = read_source(spec, base_dir=path.parent, allow_unlabelled=True)
    if data.rejected.height:
        log.warning("benchmark %s: %d rows of %s could not be read and are not checked against (%s)",
                    bench.name, data.rejected.height, path, ", ".join(sorted(set(data.rejected["reason"]))))
    return data.frame


def _load_hub(bench: Benchmark) -> pl.DataFrame:
    from curate.recipe import SourceSpec
    from curate.sources import read_source

    hub = bench.hub if bench.hub else ""
    spec = SourceSpec(name=bench.name, format=bench.format, hub=hub, config=bench.hub_config,
                      split=bench.hub_split)
    return read_source(spec, base_dir=Path.cwd()).frame


class ExtraBenchmark(StepParams):
    format: str  # source adapter that reads it (medqa, medmcqa, pubmedqa, mmlu, headqa, generic ...)
    path: str  # file, folder or glob


class BenchSelection(StepParams):
    """Which benchmark sets a step checks and where they are read from (shared by `decontaminate` and the
    rephrase pass, so both see the same sets)."""

    benchmarks: list[str] | Literal["all"] = "all"  # set names (or `mmlu_medical_test` for the six MMLU sets)
    root: str | None = None  # folder laid out like ../shared/data; default $MEDCURATE_BENCHMARKS
    paths: dict[str, str] = Field(default_factory=dict)  # per-benchmark file, folder or glob
    extra: dict[str, ExtraBenchmark] = Field(default_factory=dict)  # the user's own sets, checked as well
    pack: bool = True  # use the shipped benchmark pack for sets not found under `paths` / `root`
    hub: bool = False  # allow loading benchmarks that are not found locally from the Hub

    @field_validator("benchmarks")
    @classmethod
    def _known(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, list):
            unknown = [b for b in value if b not in BENCHMARKS and b not in GROUPS]
            if unknown:
                raise ValueError(f"unknown benchmark(s) {unknown}; known: {sorted(BENCHMARKS)} "
                                 "(add your own with `extra:`)")
        return value

    @field_validator("paths")
    @classmethod
    def _known_paths(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = [b for b in value if b not in BENCHMARKS]
        if unknown:
            raise ValueError(f"unknown benchmark(s) in paths {unknown}; known: {sorted(BENCHMARKS)}")
        return value

    @field_validator("extra")
    @classmethod
    def _new_names(cls, value: dict[str, ExtraBenchmark]) -> dict[str, ExtraBenchmark]:
        clash = [b for b in value if b in BENCHMARKS or b in GROUPS]
        if clash:
            raise ValueError(f"extra benchmark(s) {clash} reuse a built-in name: override those with `paths:`")
        return value

    def sets(self) -> dict[str, Benchmark | None]:
        """The sets to check, by name: None for a built-in set, the description of an `extra` one."""
        names = list(BENCHMARKS) if self.benchmarks == "all" else expand(list(self.benchmarks))
        out: dict[str, Benchmark | None] = dict.fromkeys(names)
        out.update({n: Benchmark(n, e.format, ()) for n, e in self.extra.items()})
        return out

    def path_of(self, name: str) -> str | None:
        return self.extra[name].path if name in self.extra else self.paths.get(name)

    def load(self) -> list[LoadedBenchmark]:
        """Every selected set's rows (cached per file set), found or with the reason it was not."""
        sets = self.sets()
        return [load_benchmark(n, root=self.root, path=self.path_of(n), pack=self.pack, hub=self.hub,
                               bench=sets[n]) for n in sets]
