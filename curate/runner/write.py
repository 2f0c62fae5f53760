"""Stage 5: write the build folder: output shards, rejects, scores, manifest, report and card.

Everything goes into a hidden temporary folder renamed into place only when complete, so a killed
build never leaves a folder that looks finished. Output shards of `max_rows_per_shard` rows are written
by pyarrow one row group of `ROW_GROUP_ROWS` at a time, cut at fixed output row numbers from the spilled
parts: one row group is in memory, and the bytes (so `output.sha256`) do not depend on the batch size,
the executor or a resume. Before, polars encoded each whole 250k-row shard in memory: the write stage rose
+843 MB in the 1M-row scale build and set the build's peak at 1M and 2M rows (1.39 / 1.67 GB, a ratio of
1.21); now +157 MB, and the peaks, in the global stages, are 0.99 / 1.01 GB, a ratio of 1.02 (`benchmarks/scale.py`).

`rejects/<stage>.parquet` and `scores/<stage>.parquet` are streamed from their spilled parts one part at a
time (a pyarrow `ParquetWriter`, each part aligned to the schema of all parts, so the columns and dtypes are
those of the old whole-frame concat); the report and the empty-build check get a `RejectSummary` per stage
and the plots lazy scans of the written files. Before, every stage's parts were read whole and kept until
the end: at 1M MedMCQA rows the write stage rose +840 MB (570k dedup rejects as whole rows).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate.fsutil import sha256_file
from curate.outdir import check_out_dir, clean_stale_tmp, finish_tmp, make_tmp
from curate.reject_summary import RejectSummary, merge, summarize
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


#: Rows per row group of an output shard. Row groups are cut at fixed output row numbers (every shard starts
#: a new one), so the bytes never depend on how the runner batched or spilled the rows, and only one row
#: group is in memory while a shard is written. Measured on the 1M-row MedMCQA scale output (430,671 rows,
#: 52 MB a 50k-row group in memory, shards of 250k): polars writing whole shards rose +874 MB and wrote
#: 105.9 MB; pyarrow row groups of 50k rose +326 MB for 96.5 MB (25k: +293 MB, 99.6 MB).
ROW_GROUP_ROWS = 50_000
#: zstd level of the output shards (pyarrow's default is 1: 123.7 MB instead of 96.5 MB for the output above).
ZSTD_LEVEL = 3


def shard_layout(total: int, max_rows: int, group_rows: int) -> list[list[int]]:
    """The row-group sizes of each output shard: shards of `max_rows`, each in groups of `group_rows`
    (at least one shard; an empty build has one shard with no row group)."""
    layout = []
    for first in range(0, max(total, 1), max_rows):
        rows = min(max_rows, total - first)
        layout.append([min(group_rows, rows - at) for at in range(0, rows, group_rows)])
    return layout


def output_blocks(files: list[Path], like: pl.DataFrame, sizes: list[int]) -> Iterator[pa.Table]:
    """The output rows, aligned to `like` (`unified(files)`), as consecutive compact Arrow tables of `sizes`
    rows (one part read at a time)."""
    queue = list(files)
    carry = like
    for size in sizes:
        while carry.height < size and queue:
            carry = pl.concat([carry, read_parts([queue.pop(0)], like=like)], how="diagonal_relaxed")
        block, carry = carry.slice(0, size).to_arrow().combine_chunks(), carry.slice(size)
        yield block
        del block


def write_shards(files: list[Path], data_dir: Path, split: str, max_rows: int) -> tuple[list[Path], list[str]]:
    """Write `data/<split>-NNNNN-of-NNNNN.parquet` row group by row group; return the paths and the output
    columns."""
    data_dir.mkdir(parents=True, exist_ok=True)
    like = unified(files)
    schema = like.to_arrow().schema
    layout = shard_layout(sum(rows_in(files)), max_rows, ROW_GROUP_ROWS)
    blocks = output_blocks(files, like, [size for groups in layout for size in groups])
    paths = []
    for i, groups in enumerate(layout):
        path = data_dir / f"{split}-{i:05d}-of-{len(layout):05d}.parquet"
        with pq.ParquetWriter(path, schema, compression="zstd", compression_level=ZSTD_LEVEL) as writer:
            for size in groups:
                writer.write_table(next(blocks).cast(schema), row_group_size=size)
        paths.append(path)
    return paths, like.columns


def write_build(final: Path, manifest: dict[str, Any], data_parts: list[Path], split: str, max_rows: int,
                rejects: dict[str, list[Path]], scores: dict[str, list[Path]]
                ) -> tuple[dict[str, Any], dict[str, RejectSummary]]:
    """Write everything into a marked `.tmp-<name>-<pid>` next to `final`, then rename it; return the
    manifest and a summary of the rejects by stage (for the empty-build explanation)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(final.parent)
    tmp = make_tmp(final)
    try:
        files, columns = write_shards(data_parts, tmp / "data", split, max_rows)
        stage_rejects = {s: summary for s, summary in side_files(tmp / "rejects", rejects).items()
                         if summary is not None}
        stage_scores = {s: pl.scan_parquet(p) for s, p in stage_files(tmp / "scores", scores).items()}
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


def report_rows(files: list[Path]) -> pl.LazyFrame:
    """The output columns the report plots, as a lazy scan of the written data shards (each plot aggregates
    what it reads; nothing here holds a row)."""
    if not files:
        return pl.LazyFrame()
    schema = pl.read_parquet_schema(files[0])
    cols = [c for c in schema if c in REPORT_COLUMNS or ("tokens" in c and schema[c].is_numeric())]
    return pl.scan_parquet(files).select(cols)


def stream_parts(files: list[Path], path: Path, on_part: Callable[[pl.DataFrame], None] | None = None) -> None:
    """Write the parts' rows in order into one zstd parquet file, one part in memory at a time; each part is
    aligned to the schema `read_parts(files)` gives (`unified`), so the file reads back equal to it."""
    like = unified(files)
    writer = None
    try:
        for f in files:
            frame = read_parts([f], like=like)
            table = frame.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, compression="zstd")
            writer.write_table(table)
            if on_part:
                on_part(frame)
    finally:
        if writer is not None:
            writer.close()


def stage_files(folder: Path, stages: dict[str, list[Path]],
                on_part: Callable[[str, pl.DataFrame], None] | None = None) -> dict[str, Path]:
    """One `<stage>.parquet` per stage with parts (rejects or scores), streamed from them; returns the paths."""
    out = {}
    for stage, files in stages.items():
        if not files:
            continue
        folder.mkdir(exist_ok=True)
        stream_parts(files, folder / f"{stage}.parquet", on_part and (lambda frame, s=stage: on_part(s, frame)))
        out[stage] = folder / f"{stage}.parquet"
    return out


def side_files(folder: Path, stages: dict[str, list[Path]]) -> dict[str, RejectSummary | None]:
    """`stage_files` of rejects; returns each stage's `RejectSummary`, built part by part as they stream."""
    parts: dict[str, list[RejectSummary]] = {}
    written = stage_files(folder, stages, lambda stage, frame: parts.setdefault(stage, []).append(summarize(frame)))
    return {stage: merge(parts.get(stage, [])) for stage in written}


def reject_summaries(stages: dict[str, list[Path]]) -> dict[str, RejectSummary]:
    """Summaries of spilled reject parts without writing them (one part in memory at a time)."""
    out = {}
    for stage, files in stages.items():
        like = unified(files)
        summary = merge(summarize(read_parts([f], like=like)) for f in files)
        if summary is not None:
            out[stage] = summary
    return out
