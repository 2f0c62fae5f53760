"""Build throughput at scale (issue 12): wall time, rows/s, peak RSS, seconds per step, floor ratio.

Inputs are derived from the real MedMCQA dev file (../shared/data, MEDCURATE_TEST_DATA) with controlled
edits so rows are distinct: row i takes base row i mod 3683, appends the last clause of another row's
question and a case number, and rotates the options (the gold label follows its text). Two shapes:

- `mcq`:     MedMCQA JSON lines, recipe = medmcqa-sft (normalize, validate, langid, dedup, decontaminate, template);
- `open_qa`: generic JSON lines {question, answer} (answer = the gold option text), same steps.

Each build runs in a child process (peak RSS = that process's max RSS; under Ray the pool actors' memory
is not included). The floor is the time
polars takes to read the same file and hash its question column; floor ratio = build wall / floor.
Decontamination is on (benchmarks from MEDCURATE_BENCHMARKS, default the data folder).

    python benchmarks/scale.py                                  # 10k and 100k, both shapes, local
    python benchmarks/scale.py --sizes 1000000 2000000 --shapes mcq --repeat 3 --single-above 1000000 \
        --executors local ray --ray-up-to 1000000      # the issue's figures: medians of 3 at 1M, one 2M run
    python benchmarks/scale.py --sizes 100000 --shapes mcq --profile 25    # top functions (cProfile)

Targets (issue 12, 2-core machine): 1M mcq rows <= 300 s at <= 3 GB peak; time(2M)/time(1M) <= 2.2 and
peak(2M) <= 1.2x peak(1M); ray <= 1.5x local wall at 1M with byte-identical output.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDCURATE_TEST_DATA", ROOT.parent / "shared" / "data")).resolve()
BASE_FILE = DATA / "medmcqa" / "dev_first3683.json"
STEPS = """steps:
  - normalize: {}
  - validate: {}
  - langid: {}
  - dedup: {}
  - decontaminate: {}
  - template: {}
"""
RECIPES = {
    "mcq": """name: scale-mcq
description: scale benchmark, MedMCQA-shaped rows
license: mit
sources:
  - name: rows
    format: medmcqa
    path: rows.jsonl
""" + STEPS,
    "open_qa": """name: scale-open
description: scale benchmark, open-QA rows
license: mit
sources:
  - name: rows
    format: generic
    path: rows.jsonl
    columns: {question: question, answer: answer, answer_format: text, task: open_qa}
""" + STEPS,
}


def make_rows(shape: str, n: int, path: Path, seed: int = 0) -> None:
    """Write n derived rows (see the module docstring) as JSON lines."""
    base = [json.loads(line) for line in BASE_FILE.read_text().splitlines() if line.strip()]
    rng = random.Random(seed)
    keys = ["opa", "opb", "opc", "opd"]
    with path.open("w") as fh:
        for i in range(n):
            r = dict(base[i % len(base)])
            other = base[rng.randrange(len(base))]["question"] or ""
            tail = other.rsplit(",", 1)[-1].strip()[:80]
            r["question"] = f"{r['question']} ({tail}; case {i})"
            k = i % 4
            texts = [r[c] for c in keys]
            rotated = texts[k:] + texts[:k]
            gold = texts[int(r["cop"]) - 1] if r.get("cop") in (1, 2, 3, 4) else None
            r.update(zip(keys, rotated, strict=True))
            if gold is not None:
                r["cop"] = rotated.index(gold) + 1
            r["id"] = f"scale-{i}"
            if shape == "open_qa":
                r = {"id": r["id"], "question": r["question"], "answer": gold or texts[0]}
            fh.write(json.dumps(r) + "\n")


def floor_seconds(path: Path) -> float:
    import polars as pl

    t0 = time.perf_counter()
    pl.read_ndjson(path, infer_schema_length=100).select(pl.col("question").hash()).sum()
    return time.perf_counter() - t0


def child_build(work: Path, shape: str, executor: str, profile: int) -> dict:
    """In the child: one build; prints its figures as JSON."""
    sys.path.insert(0, str(ROOT))
    from curate.build import run_build

    opts = {"executor": executor} if executor != "local" else {}
    t0 = time.perf_counter()
    if profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        res = prof.runcall(run_build, str(work / f"{shape}.yaml"), out=work / f"out-{shape}-{executor}",
                           options=opts)
        stats = pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative")
        stats.print_stats(profile)
        stats.sort_stats("tottime").print_stats(profile)
    else:
        res = run_build(str(work / f"{shape}.yaml"), out=work / f"out-{shape}-{executor}", options=opts)
    wall = time.perf_counter() - t0
    m = res.manifest
    steps = {"read": round(sum(s.get("seconds", 0) for s in m["sources"]), 1)}
    steps.update({s["name"]: round(s["seconds"], 1) for s in m["steps"]})
    peak_mb = _peak_mb()
    return {"wall": wall, "rows_out": m["rows_out"], "sha": m["output"]["sha256"], "steps": steps, "peak_mb": peak_mb}


def _peak_mb() -> float:
    """This process's peak RSS since it started. VmHWM (Linux), not `ru_maxrss`: Linux carries the RSS of the
    process that forked the child (at fork time) into the child's `ru_maxrss` across exec, so every build
    reported at least the parent's size (here inflated by reading the whole file for the floor: 1.5 GB at
    1M rows, 3.1 GB at 2M)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_child(work: Path, shape: str, executor: str, profile: int) -> dict:
    env = {**os.environ, "MEDCURATE_BUILDS": str(work / "builds"), "PYTHONWARNINGS": "ignore",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    env.setdefault("MEDCURATE_BENCHMARKS", str(DATA))
    proc = subprocess.Popen([sys.executable, __file__, "--child", shape, "--work", str(work), "--executor", executor,
                             "--profile", str(profile)], env=env, stdout=subprocess.PIPE,
                            stderr=None if profile else subprocess.PIPE, text=True)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"build failed:\n{(err or '')[-4000:]}")
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--shapes", nargs="+", default=["mcq", "open_qa"], choices=list(RECIPES))
    ap.add_argument("--executors", nargs="+", default=["local"], choices=["local", "ray"])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--single-above", type=int, default=None,
                    help="sizes above this run once (the issue asks medians of 3 at 1M, one run at 2M)")
    ap.add_argument("--ray-up-to", type=int, default=None, help="run the ray executor only up to this size")
    ap.add_argument("--profile", type=int, default=0, help="print the top N functions (cProfile) of each build")
    ap.add_argument("--child")
    ap.add_argument("--work", type=Path)
    ap.add_argument("--executor", default="local")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child_build(args.work, args.child, args.executor, args.profile)))
        return
    rows = []
    for n in args.sizes:
        for shape in args.shapes:
            with tempfile.TemporaryDirectory(prefix="medcurate-scale-") as tmp:
                work = Path(tmp)
                make_rows(shape, n, work / "rows.jsonl")
                (work / f"{shape}.yaml").write_text(RECIPES[shape])
                floor = floor_seconds(work / "rows.jsonl")
                for executor in args.executors:
                    if executor == "ray" and args.ray_up_to is not None and n > args.ray_up_to:
                        continue
                    repeat = 1 if args.single_above is not None and n > args.single_above else args.repeat
                    runs = []
                    for _ in range(repeat):
                        for p in work.glob("out-*"):
                            subprocess.run(["rm", "-rf", str(p)], check=True)
                        runs.append(run_child(work, shape, executor, args.profile))
                    wall = statistics.median(r["wall"] for r in runs)
                    peak = statistics.median(r["peak_mb"] for r in runs)
                    rows.append({"rows": n, "shape": shape, "executor": executor, "runs": len(runs),
                                 "wall_s": round(wall, 1), "wall_range": [round(min(r["wall"] for r in runs), 1),
                                                                         round(max(r["wall"] for r in runs), 1)],
                                 "rows_per_s": round(n / wall), "peak_mb": round(peak), "floor_s": round(floor, 2),
                                 "floor_ratio": round(wall / floor, 1), "rows_out": runs[0]["rows_out"],
                                 "sha": runs[0]["sha"][:12], "steps": runs[0]["steps"]})
                    print(json.dumps(rows[-1]), flush=True)
    _table(rows)


def _table(rows: list[dict]) -> None:
    print("\n| rows | shape | executor | runs | wall s (median, min-max) | rows/s | peak MB | floor s | floor ratio "
          "| rows out | sha | seconds per step |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        steps = ", ".join(f"{k} {v}" for k, v in r["steps"].items())
        lo, hi = r["wall_range"]
        print(f"| {r['rows']} | {r['shape']} | {r['executor']} | {r['runs']} | {r['wall_s']} ({lo}-{hi}) "
              f"| {r['rows_per_s']} | {r['peak_mb']} "
              f"| {r['floor_s']} | {r['floor_ratio']} | {r['rows_out']} | {r['sha']} | {steps} |")
    by = {(r["rows"], r["shape"], r["executor"]): r for r in rows}
    for (n, shape, ex), r in sorted(by.items()):
        half = by.get((n // 2, shape, ex))
        if half:
            print(f"- {shape}/{ex}: time({n})/time({n // 2}) = {r['wall_s'] / half['wall_s']:.2f}, "
                  f"peak ratio {r['peak_mb'] / half['peak_mb']:.2f}")
        if ex == "ray" and (n, shape, "local") in by:
            loc = by[(n, shape, "local")]
            print(f"- {shape} {n}: ray/local wall {r['wall_s'] / loc['wall_s']:.2f}, same output: {r['sha'] == loc['sha']}")


if __name__ == "__main__":
    main()
