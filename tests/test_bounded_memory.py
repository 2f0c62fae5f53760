"""A JSON array source far larger than one batch builds in memory bounded by the batch, not the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RECIPE = """name: big-array
description: bounded-memory check
license: mit
sources:
  - name: medqa
    format: medqa
    path: {file}
steps:
  - normalize: {}
  - validate: {}
  - template: {}
output:
  max_rows_per_shard: 5000
"""

CHILD = """
import json, resource, sys
from pathlib import Path
import curate.build, curate.steps.normalize, curate.steps.validate, curate.steps.template, curate.sources.medqa
res = curate.build.run_build(sys.argv[1], out=Path(sys.argv[2]), options={"batch_rows": int(sys.argv[3])})
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
m = res.manifest
print(json.dumps({"peak_kb": peak, "rows_in": m["rows_in"], "rows_out": m["rows_out"], "rows_rejected": m["rows_rejected"],
                  "sha": m["output"]["sha256"]}))
"""


def _big_array(data_dir: Path, path: Path, n: int) -> int:
    """n real MedQA rows (the 1,030-row subset, each repeat made distinct by a case number), one JSON array."""
    rows = json.loads((data_dir / "medqa/train_subset1030.json").read_text())
    with path.open("w") as fh:
        fh.write("[\n")
        for i in range(n):
            r = dict(rows[i % len(rows)])
            r["question"] = f"{r['question']} (case {i})"
            fh.write(("," if i else "") + json.dumps(r) + "\n")
        fh.write("]\n")
    return path.stat().st_size


def _run(work: Path, recipe: str, out: str, batch_rows: int) -> dict:
    env = {**os.environ, "MEDCURATE_BUILDS": str(work / "builds")}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(work / recipe), str(work / out), str(batch_rows)],
                          cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_json_array_builds_in_memory_bounded_by_the_batch(data_dir: Path, work: Path) -> None:
    """Peak RSS of a 60,000-row (~100 MB) JSON array build in batches of 2,000 exceeds that of a 6,000-row
    build by under half the file; read as one batch, it exceeds it by more than the file."""
    _big_array(data_dir, work / "small.json", 6_000)
    size = _big_array(data_dir, work / "big.json", 60_000)
    for name in ("small", "big"):
        (work / f"{name}.yaml").write_text(RECIPE.replace("{file}", f"{name}.json").replace("big-array", name))
    # the baseline is the higher of two small builds: its peak varied by ~20 MB between runs on a loaded
    # machine, and a low one made the batched build look like it grew by more than half the file
    small = max((_run(work, "small.yaml", f"small{i}", 2_000) for i in range(2)), key=lambda r: r["peak_kb"])
    batched = _run(work, "big.yaml", "batched", 2_000)
    whole = _run(work, "big.yaml", "whole", 1_000_000)
    assert batched["rows_in"] == 60_000 == batched["rows_out"] + batched["rows_rejected"]  # validate: needs_image
    assert batched["rows_out"] == whole["rows_out"] > 55_000 and batched["sha"] == whole["sha"]
    grew_batched = (batched["peak_kb"] - small["peak_kb"]) * 1024
    grew_whole = (whole["peak_kb"] - small["peak_kb"]) * 1024
    # measured here, for a 98 MB file: +27 to +34 MB in batches, +660 MB read whole
    assert grew_batched < size / 2 < size < grew_whole, (size, grew_batched, grew_whole)
