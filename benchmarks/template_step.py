"""The `template` step: columnar renderer (issue 12) vs the issue-11 row renderer, per task shape.

Rows are real files (../shared/data, MEDCURATE_TEST_DATA) repeated up to N with distinct ids (the id drives
the template choice). The row renderer is the reference kept in tests/test_template_columnar.py; the table
says whether both gave identical `messages`. Seconds are the median of --repeat runs (min-max).

    python benchmarks/template_step.py                     # 100k rows per shape
    python benchmarks/template_step.py --rows 1000000 --shapes mcq --repeat 3
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _data import DATA  # noqa: E402
from _timing import measure  # noqa: E402

from curate.recipe import SourceSpec  # noqa: E402
from curate.sources import read_source  # noqa: E402
from curate.steps import BuildContext, get_step  # noqa: E402

SHAPES = {  # shape -> (format, path under DATA)
    "mcq": ("medmcqa", "medmcqa/dev_first3683.json"),
    "yes_no_maybe": ("pubmedqa", "pubmedqa/train.json"),
    "open_qa": ("medquad", "instruct/medquad"),
    "dialogue": ("chatdoctor", "dialogue/chatdoctor/genmedgpt5k_first4000.json"),
    "summarization": ("mts-dialog", "dialogue/mts-dialog/MTS-Dialog-TrainingSet.csv"),
}


def reference_renderer():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("tpl_ref", ROOT / "tests" / "test_template_columnar.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reference


def rows(shape: str, n: int) -> pl.DataFrame:
    fmt, rel = SHAPES[shape]
    base = read_source(SourceSpec(name=shape, format=fmt, path=str(DATA / rel)), base_dir=DATA).frame
    copies = [base.with_columns(pl.col("id") + f"-{i}") for i in range(n // base.height + 1)]
    return pl.concat(copies).head(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-reference", action="store_true", help="time the columnar step only")
    args = ap.parse_args()
    reference = None if args.no_reference else reference_renderer()
    step = get_step("template")({"system_prompt": "You are a careful medical assistant."})
    ctx = BuildContext(recipe_name="bench", work_dir=Path("/tmp"))
    print("| shape | rows | columnar s | row renderer s | speed-up | identical |\n|---|---:|---:|---:|---:|---|")
    for shape in args.shapes:
        frame = rows(shape, args.rows)
        new = measure(lambda f=frame: step.apply(f, ctx).kept["messages"], args.repeat)
        if reference is None:
            print(f"| {shape} | {frame.height} | {new.cell()} | - | - | - |", flush=True)
            continue
        old = measure(lambda f=frame: reference(f, step.params, ctx.seed)[0], args.repeat)
        same = "yes" if new.result.equals(old.result) else "NO"
        print(f"| {shape} | {frame.height} | {new.cell()} | {old.cell()} | {old.median / new.median:.1f}x | {same} |",
              flush=True)


if __name__ == "__main__":
    main()
