"""The streaming source driver (`open_source`) on the real files: batches, limit, bounded memory, hashing."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest

from curate.recipe import SourceSpec
from curate.sources import SourceBatch, open_source, read_source

ROOT = Path(__file__).resolve().parents[1]


def spec(fmt: str, path: str | Path, **kw) -> SourceSpec:
    return SourceSpec(name=kw.pop("name", fmt), format=fmt, path=str(path), **kw)


@pytest.mark.parametrize("fmt,rel,rows", [
    ("medqa", "medqa/test.jsonl", 1273),  # JSON lines
    ("medqa", "medqa/train_subset1030.json", 1030),  # JSON array
    ("pubmedqa", "pubmedqa/train.json", 500),  # JSON object keyed by PMID
    ("headqa", "headqa/train.json", 2657),  # nested exams object
    ("mmlu", "mmlu_medical/test", 1089),  # a folder of headerless CSV files
])
def test_batches_equal_the_whole_read(data_dir: Path, fmt: str, rel: str, rows: int) -> None:
    whole = read_source(spec(fmt, rel), base_dir=data_dir)
    stream = open_source(spec(fmt, rel), base_dir=data_dir, batch_rows=400)
    assert stream.info["sha256"] is None  # complete only once the iteration ends
    batches = list(stream)
    assert all(isinstance(b, SourceBatch) for b in batches)
    sizes = [b.frame.height + b.rejected.height for b in batches]
    assert sum(sizes) == rows == stream.info["rows"] and max(sizes) <= 400 and len(batches) == -(-rows // 400)
    assert pl.concat([b.frame for b in batches]).equals(whole.frame)
    assert stream.info == whole.info and stream.info.get("complete", True)
    files = sorted((data_dir / rel).glob("*.csv")) if (data_dir / rel).is_dir() else [data_dir / rel]
    assert stream.info["bytes_read"] == sum(f.stat().st_size for f in files)
    if len(files) == 1:
        assert stream.info["sha256"] == hashlib.sha256(files[0].read_bytes()).hexdigest()


def test_a_stream_is_read_once(data_dir: Path) -> None:
    stream = open_source(spec("medqa", "medqa/test.jsonl"), base_dir=data_dir)
    list(stream)
    with pytest.raises(RuntimeError, match="only once"):
        list(stream)


def _big_array(path: Path, data_dir: Path, mib: int) -> int:
    """A JSON array of distinct MedQA rows (real rows, numbered) of about `mib` MiB; returns its row count."""
    rows = [json.loads(line) for line in (data_dir / "medqa/test.jsonl").read_text().splitlines()]
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        fh.write("[\n")
        while fh.tell() < mib << 20:
            for r in rows:
                fh.write(("" if n == 0 else ",\n") + json.dumps(dict(r, question=f"{n}. {r['question']}", id=n)))
                n += 1
        fh.write("\n]\n")
    return n


def test_limit_stops_reading_early(data_dir: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    _big_array(big, data_dir, 24)
    stream = open_source(spec("medqa", big), base_dir=tmp_path, limit=10)
    data = stream.read_all()
    assert data.frame.height == 10 and data.info["rows"] == 10
    assert data.info["complete"] is False
    assert data.info["bytes_read"] <= 2 << 20 < big.stat().st_size  # one or two 1 MiB reads of 24 MiB
    head = big.read_bytes()[: data.info["bytes_read"]]
    assert data.info["sha256"] == hashlib.sha256(head).hexdigest()  # the bytes read, and only those


def test_json_array_larger_than_the_memory_bound_streams(data_dir: Path, tmp_path: Path) -> None:
    """A ~200 MiB JSON array read in 2,000-row batches grows the peak RSS by < 100 MiB.

    `json.load` of this file alone needs well over 1 GiB (Python objects are ~5x the JSON text), which
    is what the reader did before (read_bytes + json.loads). Measured in a fresh interpreter (ru_maxrss).
    """
    big = tmp_path / "big.json"
    n = _big_array(big, data_dir, 200)
    script = textwrap.dedent(f"""
        import resource, sys
        from pathlib import Path
        from curate.recipe import SourceSpec
        from curate.sources import open_source
        spec = SourceSpec(name="big", format="medqa", path={str(big)!r})
        stream = open_source(spec, base_dir=Path("."), batch_rows=2000)
        batches = iter(stream)
        first = next(batches)  # the first batch: imports, buffers and one batch are allocated
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kept = first.frame.height
        for batch in batches:
            kept += batch.frame.height
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(kept, stream.info["rows"], (peak - base) // 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    kept, rows, growth_mib = map(int, out.stdout.split())
    assert kept == rows == n
    assert big.stat().st_size > 200 << 20 and growth_mib < 100, growth_mib
