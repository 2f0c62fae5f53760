"""Source read throughput and memory: streaming `open_source` vs the polars floor (issue 12, item 1).

Rows are MedMCQA dev rows from ../shared/data, numbered so every row is distinct, written as JSON lines
and as one JSON array. For each size and layout, a fresh interpreter reads the file with `open_source`
(batches consumed and dropped, as the staged runner does) and reports wall seconds, rows/s and peak
RSS; the floor is `polars.read_ndjson` of the same JSON lines file. Pass `--ref PATH` (a checkout of an
older medcurate, e.g. /work/main) to add its `read_source` (whole read) as a column.

    python benchmarks/source_read.py --rows 10000 100000 [--ref /work/main] [--repeat 3]

Each reader runs `--repeat` times (at least 3), interleaved with the others so drift on a shared machine hits
them alike; the table has the median seconds (min-max), rows/s at the median, the median peak RSS, and the
ratio of the median seconds to the floor's (polars reading the same JSON lines).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import Timing  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDCURATE_TEST_DATA", ROOT.parent / "shared" / "data")).resolve()

_STREAM = """
import resource, sys, time
from pathlib import Path
from curate.recipe import SourceSpec
t = time.perf_counter()
spec = SourceSpec(name="m", format="medmcqa", path=sys.argv[1])
if sys.argv[2] == "stream":
    from curate.sources import open_source
    stream = open_source(spec, base_dir=Path("."), batch_rows=50_000)
    rows = sum(b.frame.height + b.rejected.height for b in stream)
elif sys.argv[2] == "whole":
    from curate.sources import read_source
    d = read_source(spec, base_dir=Path("."))
    rows = d.frame.height + d.rejected.height
else:
    import polars as pl
    rows = pl.read_ndjson(sys.argv[1]).height
print(rows, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def write_rows(n: int, folder: Path) -> tuple[Path, Path]:
    src = [json.loads(line) for line in (DATA / "medmcqa/dev_first3683.json").read_text().splitlines()]
    jsonl, array = folder / f"rows{n}.jsonl", folder / f"rows{n}.json"
    with jsonl.open("w", encoding="utf-8") as fl, array.open("w", encoding="utf-8") as fa:
        fa.write("[\n")
        for i in range(n):
            r = src[i % len(src)]
            line = json.dumps(dict(r, id=f"{r['id']}-{i}", question=f"{i}. {r['question']}"))
            fl.write(line + "\n")
            fa.write(("" if i == 0 else ",\n") + line)
        fa.write("\n]\n")
    return jsonl, array


def run(path: Path, mode: str, code_root: Path) -> tuple[int, float, int]:
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    out = subprocess.run([sys.executable, "-c", _STREAM, str(path), mode], capture_output=True, text=True,
                         env=env, check=True)
    rows, secs, rss = out.stdout.split()
    return int(rows), float(secs), int(rss)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--ref", type=Path, help="an older checkout to compare (its read_source, whole read)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each reader (median, min, max)")
    args = ap.parse_args()
    print(f"median of {args.repeat} runs (min-max); ratio: median seconds / the floor's on the same rows")
    print("| rows in | layout | MiB | reader | rows out | seconds | rows/s | peak RSS MiB | x floor |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.rows:
            jsonl, array = write_rows(n, Path(tmp))
            readers = [("open_source", "stream", ROOT)]
            if args.ref:
                readers.append((f"read_source @ {args.ref}", "whole", args.ref))
            table = [(layout, path, *reader) for layout, path in (("jsonl", jsonl), ("array", array))
                     for reader in readers] + [("jsonl", jsonl, "polars.read_ndjson (floor)", "floor", ROOT)]
            runs: dict[int, list[tuple[int, float, int]]] = {i: [] for i in range(len(table))}
            for _ in range(args.repeat):
                for i, (_layout, path, _label, mode, code) in enumerate(table):
                    runs[i].append(run(path, mode, code))
            timings = [Timing(seconds=[secs for _, secs, _ in runs[i]]) for i in range(len(table))]
            floor = timings[-1].median
            for i, (layout, path, label, _mode, _code) in enumerate(table):
                t, rows = timings[i], runs[i][0][0]
                rss = statistics.median(r for *_, r in runs[i])
                print(f"| {n:,} | {layout} | {path.stat().st_size / 2**20:.0f} | {label} | {rows:,} | {t.cell()} "
                      f"| {t.rate(rows):,.0f} | {rss:,.0f} | {t.median / floor:.1f} |")


if __name__ == "__main__":
    main()
