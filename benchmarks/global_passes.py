"""Global steps' per-part passes in process vs as Ray tasks (issue 12: "signatures and band keys in parallel").

The derived MedMCQA rows of `benchmarks/scale.py` (mcq shape) are read and spilled as key parts of
`--batch-rows` rows; then `Dedup.decide` and `Decontaminate.decide` run over `StageKeys` with the local
`map_parts` and with the Ray executor's (a local Ray started here with `--cpus` CPUs, loopback only). Printed:
the seconds of the mapped pass alone (dedup's `scan_part`: exact-key hashes, shingles, MinHash signatures,
band keys; decontaminate's `_match_part`), of the whole `decide`, and whether the decisions are identical.

    python benchmarks/global_passes.py --rows 200000 --batch-rows 25000 --cpus 2

Ray's first tasks start worker processes (imports: a second or two each): they are in its first figure (the
dedup scan). On a machine whose cores are busy with other work the parallel pass cannot gain: compare on a
quiet machine. Checked here at 200k rows in 8 parts, 2 CPUs, load average 5 from other builds: identical
decisions; dedup scan 8.1 / 7.8 s local, 11.3 (first, workers starting) / 7.4 s ray; dedup decide 12.8 / 12.5 s;
decontaminate decide 9.9 / 9.7 s (noise-level: the cores were taken).
"""

from __future__ import annotations

import argparse
import os
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
            for _ in range(2):  # the first one starts Ray's task workers
                with ctx.scratch("scan-") as scratch:
                    scans.append(timed(lambda k=keys, s=scratch: list(map_parts(k, partial(
                        scan_part, dedup.settings(), dedup.params, ctx.seed, s.resolve(), 0))))[1])
            d, dedup_s = timed(lambda k=keys: dedup.decide(k, ctx))
            keys = StageKeys(files, unified(files), decon.reads(unified(files).columns), mapper)
            _, match_s = timed(lambda k=keys: list(map_parts(k, partial(_match_part, index=index, p=p))))
            m, decon_s = timed(lambda k=keys: decon.decide(k, ctx))
            decisions[name] = (d.code.tolist(), d.rep.tolist(), d.stats, m.matches, m.stats)
            table.append((name, *scans, dedup_s, match_s, decon_s))
        ray.shutdown()
    a, b = decisions["local"], decisions["ray"]
    same = a[:3] == b[:3] and a[3].equals(b[3]) and a[4] == b[4]
    print(f"\n{args.rows} derived mcq rows, {len(files)} parts of {args.batch_rows}, ray on {args.cpus} CPUs\n")
    print("| executor | dedup scan s (first) | dedup scan s (again) | dedup decide s | decontaminate match s "
          "| decontaminate decide s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, *secs in table:
        print(f"| {name} | " + " | ".join(f"{s:.1f}" for s in secs) + " |")
    print(f"- ray/local: dedup scan (again) {table[1][2] / table[0][2]:.2f}, dedup decide "
          f"{table[1][3] / table[0][3]:.2f}, decontaminate decide {table[1][5] / table[0][5]:.2f}; "
          f"identical decisions: {same}")


if __name__ == "__main__":
    main()
