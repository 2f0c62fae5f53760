"""Global steps' per-part passes in process vs as Ray tasks (issue 12: "signatures and band keys in parallel").

The derived MedMCQA rows of `benchmarks/scale.py` (mcq shape) are read and spilled as key parts of
`--batch-rows` rows; then `Dedup.decide` and `Decontaminate.decide` run over `StageKeys` with the local
`map_parts` and with the Ray executor's (a local Ray started here with `--cpus` CPUs, loopback only). Printed:
the seconds of the mapped pass alone (dedup's `scan_part`: exact-key hashes, shingles, MinHash signatures,
band keys; decontaminate's `_match_part`), of the whole `decide`, and whether the decisions are identical.

    python benchmarks/global_passes.py --rows 200000 --batch-rows 25000 --cpus 2 [--repeat 3]

Ray's first tasks start worker processes (imports: a second or two each): they are in its first figure (the
dedup scan). On a machine whose cores are busy with other work the parallel pass cannot gain: compare on a
quiet machine. Quiet 2-core machine, 200k rows in 8 parts, `--repeat 3`, medians: identical decisions; dedup
scan 6.3 s local, 4.1 s ray (0.65x); dedup decide 10.6 / 9.4 s (0.88x: the pair verification and cluster
resolution stay on the driver); decontaminate decide 8.7 / 6.1 s (0.70x).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
os.environ.update({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
                   "RAY_AUTH_MODE": "disabled"})


def spill_parts(rows: int, batch_rows: int, folder: Path) -> list[Path]:
    """Derived mcq rows (scale.make_rows) read through the medmcqa adapter, spilled as parts."""
    from scale import make_rows

    from curate.recipe import SourceSpec
    from curate.runner.state import write_part
    from curate.sources import open_source

    src = folder / "rows.jsonl"
    make_rows("mcq", rows, src)
    stream = open_source(SourceSpec(name="rows", format="medmcqa", path=str(src)), base_dir=folder,
                         batch_rows=batch_rows)
    return [write_part(b.frame, folder / f"part-{k:05d}.parquet") for k, b in enumerate(stream)]


def timed(fn):  # noqa: ANN001, ANN201
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--batch-rows", type=int, default=25_000)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each pass (median; min-max)")
    args = ap.parse_args()
    os.environ.setdefault("MEDCURATE_BENCHMARKS", str(ROOT.parent / "shared" / "data"))

    import ray

    from curate.runner.executors import map_local
    from curate.runner.globals import StageKeys
    from curate.runner.ray_exec import RayExecutor
    from curate.runner.state import unified
    from curate.steps import BuildContext
    from curate.steps.decontaminate import Decontaminate, _match_part, bench_index
    from curate.steps.dedup import Dedup, scan_part
    from curate.steps.keyed import map_parts

    with tempfile.TemporaryDirectory(prefix="global-passes-") as tmp:
        work = Path(tmp)
        files = spill_parts(args.rows, args.batch_rows, work)
        ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
        mappers = {"local": map_local, "ray": RayExecutor().map_parts}
        ctx = BuildContext(recipe_name="global-passes", work_dir=work)
        dedup, decon = Dedup({}), Decontaminate({})
        p = decon.params
        index, _ = bench_index(p.sets(), p, work)  # built once, cached: not part of either figure
        table, decisions = [], {}
        for name, mapper in mappers.items():
            keys = StageKeys(files, unified(files), dedup.reads(unified(files).columns), mapper)
            scans = []
            for _ in range(1 + args.repeat):  # the first one starts Ray's task workers
                with ctx.scratch("scan-") as scratch:
                    scans.append(timed(lambda k=keys, s=scratch: list(map_parts(k, partial(
                        scan_part, dedup.settings(), dedup.params, ctx.seed, s.resolve(), 0))))[1])
            dedup_s = [timed(lambda k=keys: dedup.decide(k, ctx)) for _ in range(args.repeat)]
            d = dedup_s[-1][0]
            keys = StageKeys(files, unified(files), decon.reads(unified(files).columns), mapper)
            match_s = [timed(lambda k=keys: list(map_parts(k, partial(_match_part, index=index, p=p))))[1]
                       for _ in range(args.repeat)]
            decon_s = [timed(lambda k=keys: decon.decide(k, ctx)) for _ in range(args.repeat)]
            m = decon_s[-1][0]
            decisions[name] = (d.code.tolist(), d.rep.tolist(), d.stats, m.matches, m.stats)
            table.append((name, [scans[0]], scans[1:], [t for _, t in dedup_s], match_s, [t for _, t in decon_s]))
        ray.shutdown()
    a, b = decisions["local"], decisions["ray"]
    same = a[:3] == b[:3] and a[3].equals(b[3]) and a[4] == b[4]
    print(f"\n{args.rows} derived mcq rows, {len(files)} parts of {args.batch_rows}, ray on {args.cpus} CPUs\n")
    print("| executor | dedup scan s (first) | dedup scan s (again) | dedup decide s | decontaminate match s "
          "| decontaminate decide s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, *secs in table:
        print(f"| {name} | " + " | ".join(_cell(t) for t in secs) + " |")
    med = [[statistics.median(t) for t in row[1:]] for row in table]
    print(f"- ray/local (medians of {args.repeat}): dedup scan (again) {med[1][1] / med[0][1]:.2f}, dedup decide "
          f"{med[1][2] / med[0][2]:.2f}, decontaminate decide {med[1][4] / med[0][4]:.2f}; "
          f"identical decisions: {same}")


def _cell(times: list[float]) -> str:
    """Median (min-max) of a pass's timed runs."""
    if len(times) == 1:
        return f"{times[0]:.1f}"
    return f"{statistics.median(times):.1f} ({min(times):.1f}-{max(times):.1f})"


if __name__ == "__main__":
    main()
