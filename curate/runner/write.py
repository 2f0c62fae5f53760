"""Stage 5: write the build folder: output shards, rejects, scores, manifest, report and card.

Everything goes into a hidden temporary folder renamed into place only when complete, so a killed
build never leaves a folder that looks finished. Output shards are cut from the spilled parts
`max_rows_per_shard` rows at a time, so at most one output shard is in memory; each is written exactly as
the in-memory runner wrote `frame.slice(...)`, hence the same bytes and the same `output.sha256`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from curate.fsutil import sha256_file
from curate.outdir import check_out_dir, clean_stale_tmp, finish_tmp, make_tmp
from curate.report import render_report
from curate.runner.state import read_parts, rows_in, unified


def final_path(base: Path, build_id: str, out: Path | None) -> Path:
    """Where the build goes: `out` (checked: new or empty, see curate.outdir) or `base/<build_id>`
    (suffixed if taken)."""
    if out:
        return check_out_dir(out)
    final, n = base / build_id, 1
    while final.exists() or list(base.glob(f".tmp-{final.name}-*")):  # two builds in the same second
        n += 1
        final = base / f"{build_id}.{n}"
    return final


def output_frames(files: list[Path], max_rows: int) -> Iterator[pl.DataFrame]:
    """The output rows in consecutive frames of `max_rows` (at least one frame, maybe empty)."""
    like = unified(files)
    counts = rows_in(files)
    total = sum(counts)
    n = max(1, -(-total // max_rows))
    queue = list(zip(files, counts, strict=True))
    carry = like
    for _ in range(n):
        while carry.height < max_rows and queue:
            path, _count = queue.pop(0)
            carry = pl.concat([carry, read_parts([path], like=like)], how="diagonal_relaxed")
        yield compact(carry.slice(0, max_rows))
        carry = carry.slice(max_rows)


def compact(frame: pl.DataFrame) -> pl.DataFrame:
    """The rows in buffers of their own. Polars writes a nested column (options, messages) that is a view
    into a larger buffer with other page boundaries than the same rows held alone: 30,000 rows cut into
    shards of 20,000 gave different bytes for equal data depending on the batch size. Concatenating two
    halves always copies, so every shard is written from compact buffers whatever the batching."""
    if frame.height < 2:
        return frame
    half = frame.height // 2
    return pl.concat([frame.slice(0, half), frame.slice(half)], rechunk=True)


def write_shards(files: list[Path], data_dir: Path, split: str, max_rows: int) -> tuple[list[Path], list[str]]:
    """Write `data/<split>-NNNNN-of-NNNNN.parquet`; return the paths and the output columns."""
    data_dir.mkdir(parents=True, exist_ok=True)
    total = sum(rows_in(files))
    n = max(1, -(-total // max_rows))
    paths = []
    for i, frame in enumerate(output_frames(files, max_rows)):
        path = data_dir / f"{split}-{i:05d}-of-{n:05d}.parquet"
        frame.write_parquet(path, compression="zstd", statistics=True)
        paths.append(path)
    return paths, unified(files).columns


def write_build(final: Path, manifest: dict[str, Any], data_parts: list[Path], split: str, max_rows: int,
                rejects: dict[str, list[Path]], scores: dict[str, list[Path]]
                ) -> tuple[dict[str, Any], dict[str, pl.DataFrame]]:
    """Write everything into a marked `.tmp-<name>-<pid>` next to `final`, then rename it; return the
    manifest and the rejects by stage (for the empty-build explanation)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(final.parent)
    tmp = make_tmp(final)
    try:
        files, columns = write_shards(data_parts, tmp / "data", split, max_rows)
        stage_rejects = _side_files(tmp / "rejects", rejects)
        stage_scores = _side_files(tmp / "scores", scores)
        file_sha = {str(p.relative_to(tmp)): sha256_file(p) for p in files}
        total = hashlib.sha256()
        for p in files:
            total.update(bytes.fromhex(file_sha[str(p.relative_to(tmp))]))
        manifest = {
            "name": manifest["name"],
            "build_id": final.name,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            **{k: v for k, v in manifest.items() if k != "name"},
            "output": {"sha256": total.hexdigest(), "files": list(file_sha), "file_sha256": file_sha,
                       "columns": columns,
                       "rejects": sorted(f"rejects/{s}.parquet" for s in stage_rejects),
                       "scores": sorted(f"scores/{s}.parquet" for s in stage_scores)},
        }
        from curate.report_html import write_html_report  # matplotlib: imported only when writing a build

        manifest["output"]["plots"] = write_html_report(tmp, manifest, report_rows(files), stage_scores)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n")
        (tmp / "report.md").write_text(render_report(manifest, stage_rejects), encoding="utf-8")
        if importlib.util.find_spec("curate.card"):
            from curate.card import render_dataset_card

            (tmp / "README.md").write_text(render_dataset_card(manifest, tmp), encoding="utf-8")
        finish_tmp(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest, stage_rejects


#: Output columns the HTML report plots (lengths per source / task, token columns); read from the written
#: shards, so the report never needs the whole output rows in memory.
REPORT_COLUMNS = ("id", "source", "task", "subtask", "question")


def report_rows(files: list[Path]) -> pl.DataFrame:
    """The output columns the report plots, from the written data shards."""
    if not files:
        return pl.DataFrame()
    schema = pl.read_parquet_schema(files[0])
    cols = [c for c in schema if c in REPORT_COLUMNS or ("tokens" in c and schema[c].is_numeric())]
    return pl.concat([pl.read_parquet(f, columns=cols) for f in files], how="diagonal_relaxed")


def _side_files(folder: Path, stages: dict[str, list[Path]]) -> dict[str, pl.DataFrame]:
    """One `<stage>.parquet` per stage from its spilled parts (rejects or scores); returns the frames."""
    out = {}
    for stage, files in stages.items():
        if not files:
            continue
        folder.mkdir(exist_ok=True)
        frame = read_parts(files)
        frame.write_parquet(folder / f"{stage}.parquet", compression="zstd")
        out[stage] = frame
    return out
