"""Acceptance: a fresh `curate build medqa-sft` (no env vars, no root) checks every pack set and rejects
verbatim leaks from each, naming the set and the item id; the card lists every set as checked."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from curate.benchpack import pack_sets, read_pack_set
from curate.cli import app


def _as_medqa(row: dict) -> dict:
    """A pack item written back in MedQA's raw layout, as a scraper that copied it would have it."""
    opts = {o["label"] if len(o["label"]) == 1 else "ABC"[i]: o["text"] for i, o in enumerate(row["options"])}
    return {"question": row["question"], "options": opts, "answer_idx": next(iter(opts)),
            "answer": next(iter(opts.values())), "meta_info": "planted"}


def test_fresh_medqa_sft_build_checks_every_pack_set(data_dir: Path, work: Path, monkeypatch) -> None:
    monkeypatch.delenv("MEDCURATE_BENCHMARKS", raising=False)
    train = json.loads((data_dir / "medqa/train_subset1030.json").read_text())
    planted: dict[str, str] = {}  # question -> "set:item id"
    for s in pack_sets():
        item = read_pack_set(s.name).row(17, named=True)
        planted[" ".join(item["question"].split())] = f"{s.name}:{item['source_id']}"
        train.append(_as_medqa(item))
    src = work / "medqa_planted.json"
    src.write_text(json.dumps(train))
    res = CliRunner().invoke(app, ["build", "medqa-sft", "--source", f"medqa={src}", "-q"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    path = Path(res.stdout.strip().splitlines()[-1])
    rejects = pl.read_parquet(path / "rejects" / "decontaminate.parquet")
    found = {" ".join(q.split()): d for q, d in rejects.select("question", "detail").iter_rows()
             if " ".join(q.split()) in planted}  # `normalize` collapsed the spacing
    assert len(found) == len(planted) == 11
    for q, detail in found.items():
        assert detail.startswith(planted[q] + " ("), detail
    m = json.loads((path / "manifest.json").read_text())
    table = next(s for s in m["steps"] if s["name"] == "decontaminate")["stats"]["benchmarks"]
    assert set(table) == {s.name for s in pack_sets()}
    card = (path / "README.md").read_text()
    checked = m["steps"][[s["name"] for s in m["steps"]].index("decontaminate")]["rows_in"]
    for s in pack_sets():
        assert f"| {s.name} | yes | {s.rows} | {checked} |" in card, s.name
