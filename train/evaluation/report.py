"""Scores -> eval.json, the model card's Evaluation section, `train compare`, and Aloe's reference numbers.

Standard error of an accuracy p over n questions: sqrt(p(1-p)/(n-1)), the sample standard error of the
mean that lm-eval reports for `acc`. MultiMedQA score: correct answers over questions, summed over the
MultiMedQA benchmarks evaluated (a question-weighted mean of their accuracies); its standard error is
sqrt(sum n_i^2 se_i^2) / N. ``complete`` says whether all nine sets were evaluated in full (no --limit).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from train.evaluation.config import MULTIMEDQA

EVAL_FILE = "eval.json"
ALOE_FILE = Path(__file__).parent / "aloe_reference.yaml"


def stderr(correct: int, n: int) -> float | None:
    if n < 2:
        return None
    p = correct / n
    return math.sqrt(p * (1 - p) / (n - 1))


def finish(scores: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Accuracy and standard error from counts, for every benchmark."""
    out = {}
    for bench, s in scores.items():
        n, c = int(s["questions"]), int(s["correct"])
        out[bench] = {**s, "accuracy": c / n if n else None, "stderr": stderr(c, n)}
    return out


def multimedqa(scores: dict[str, dict[str, Any]], limit: int | None) -> dict[str, Any] | None:
    present = [b for b in MULTIMEDQA if b in scores and scores[b]["questions"]]
    if not present:
        return None
    n = sum(scores[b]["questions"] for b in present)
    correct = sum(scores[b]["correct"] for b in present)
    var = sum((scores[b]["questions"] * (scores[b]["stderr"] or 0.0)) ** 2 for b in present)
    return {"score": correct / n, "stderr": math.sqrt(var) / n, "questions": n, "correct": correct,
            "benchmarks": present, "complete": len(present) == len(MULTIMEDQA) and limit is None}


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------- Aloe numbers


def aloe_reference(size: str | None) -> dict[str, Any] | None:
    """The published Aloe Beta entry for a base size ("7B", "8B", "70B", "72B"), with its citation."""
    if not size:
        return None
    data = yaml.safe_load(ALOE_FILE.read_text(encoding="utf-8"))
    model = next((m for m in data["models"] if m["size"].casefold() == size.casefold()), None)
    if model is None:
        return None
    return {"model": model["name"], "size": model["size"], "citation": data["citation"],
            "status": model.get("status", data.get("status")), "scores": model.get("scores") or {}}


def size_of(checkpoint: str | None) -> str | None:
    """Parameter count of a local checkpoint rounded to the Aloe sizes it could match (7B, 8B, 70B, 72B)."""
    if not checkpoint:
        return None
    from safetensors import safe_open

    total = 0
    for f in Path(checkpoint).glob("*.safetensors"):
        with safe_open(str(f), "np") as fh:
            for k in fh.keys():  # noqa: SIM118 - a safetensors handle, not a dict
                total += math.prod(fh.get_slice(k).get_shape())
    billions = total / 1e9
    return next((s for s, b in (("7B", 7.6), ("8B", 8.0), ("70B", 70.6), ("72B", 72.7)) if abs(billions - b) < 0.3),
                None)


# ------------------------------------------------------------------------------------------ card section


def card_entry(result: dict[str, Any]) -> dict[str, Any]:
    """What the model card shows of one evaluation: rows per benchmark with Aloe's number beside ours."""
    aloe = result.get("aloe_reference")
    rows = []
    for bench, s in result["benchmarks"].items():
        ref = None
        if aloe:
            ref = aloe["scores"].get(bench) if aloe["scores"].get(bench) is not None else aloe["status"]
        rows.append({"benchmark": bench, "accuracy": s["accuracy"], "stderr": s["stderr"],
                     "questions": s["questions"], "aloe": ref})
    return {"name": result["name"], "scheme": result["scheme"], "created": result["created"], "rows": rows,
            "multimedqa": result.get("multimedqa"), "aloe": aloe, "limit": result.get("limit")}


def update_card(model_dir: str, result: dict[str, Any]) -> Path | None:
    """Add this evaluation to a training output's lineage and re-render its model card (None: no lineage)."""
    from train.card import write_outputs
    from train.models import read_lineage

    lineage = read_lineage(model_dir)
    if lineage is None:
        return None
    lineage.setdefault("evaluations", {})[result["scheme"]] = card_entry(result)
    return write_outputs(model_dir, lineage)


# ------------------------------------------------------------------------------------------------ compare


def read_result(path: str | Path) -> dict[str, Any]:
    from curate.errors import InputError

    p = Path(path)
    p = p / EVAL_FILE if p.is_dir() else p
    if not p.is_file():
        raise InputError(f"no {EVAL_FILE} at {path}", hint="pass the output_dir of `train eval` or its eval.json")
    return json.loads(p.read_text(encoding="utf-8"))


def compare_rows(results: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    benches = [b for b in MULTIMEDQA if any(b in r["benchmarks"] for r in results)]
    benches += sorted({b for r in results for b in r["benchmarks"]} - set(benches))
    rows = []
    for r in results:
        mm = r.get("multimedqa") or {}
        rows.append({
            "model": r["name"], "scheme": r["scheme"],
            "datasets": [f"{d['name']}@{d.get('version') or d.get('build_id')}" for d in r.get("datasets", [])],
            "scores": {b: r["benchmarks"][b]["accuracy"] for b in benches if b in r["benchmarks"]},
            "multimedqa": mm.get("score"), "questions": mm.get("questions"),
        })
    return benches, rows


def compare_markdown(results: list[dict[str, Any]]) -> str:
    benches, rows = compare_rows(results)
    pct = lambda v: "—" if v is None else f"{100 * v:.1f}"  # noqa: E731
    head = ["model", "scheme", "datasets", "MultiMedQA", *benches]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], r["scheme"], ", ".join(f"`{d}`" for d in r["datasets"]) or "—",
                 f"{pct(r['multimedqa'])} ({r['questions'] or 0} q)",
                 *(pct(r["scores"].get(b)) for b in benches)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
