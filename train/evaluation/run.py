"""`train eval`: load the pack sets, score the model (lm-eval zero-shot, or sc-cot / medprompt on synth's
client), write ``eval.json`` (atomic) and the scores into the evaluated model's card."""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import json
import os
from pathlib import Path
from typing import Any

from train.evaluation.config import EvalRunConfig
from train.evaluation.questions import load_set, pack_versions
from train.evaluation.report import (
    EVAL_FILE,
    aloe_reference,
    atomic_write,
    finish,
    multimedqa,
    size_of,
    update_card,
)

CACHE_ENV = "MEDCURATE_TEACHER_CACHE"  # same variable as synth's steps: one cache for builds and evals


def cache_dir(cfg: EvalRunConfig) -> Path:
    """cfg.cache > the folder of $MEDCURATE_TEACHER_CACHE > <output_dir>/cache."""
    if cfg.cache:
        return Path(cfg.cache)
    env = os.environ.get(CACHE_ENV)
    return Path(env).parent if env else Path(cfg.output_dir) / "cache"


def _versions() -> dict[str, str]:
    out = {}
    for lib in ("medcurate", "lm_eval", "transformers", "torch", "bm25s"):
        try:
            out[lib] = md.version(lib)
        except md.PackageNotFoundError:
            continue
    return out


def _model_lineage(cfg: EvalRunConfig) -> tuple[str | None, list[dict[str, Any]]]:
    """(training output folder, datasets it trained on across all stages)."""
    from train.card import flatten_stages
    from train.models import read_lineage

    folder = cfg.checkpoint or cfg.lineage
    lineage = read_lineage(folder) if folder else None
    if lineage is None:
        return None, []
    data = [{k: d.get(k) for k in ("name", "version", "build_id", "sha256", "split", "rows_used")} | {
        "stage": s.get("stage")} for s in flatten_stages(lineage) for d in s.get("datasets", [])]
    return folder, data


def run_eval(cfg: EvalRunConfig, origin: str = "<config>") -> dict[str, Any]:
    """Evaluate, write ``<output_dir>/eval.json`` and the card; return the result dict."""
    out = Path(cfg.output_dir)
    cdir = cache_dir(cfg)
    extra: dict[str, Any] = {}
    records: list[dict[str, Any]] = []
    if cfg.scheme == "zero-shot":
        from train.evaluation.harness import run_zero_shot

        scores = run_zero_shot(cfg, cdir)
    else:
        from train.evaluation.schemes import run_scheme

        sets = {b: load_set(b, root=cfg.benchmark_root, limit=cfg.limit) for b in cfg.benchmarks}
        scores, records, extra = run_scheme(cfg, sets, cdir)
    scores = finish(scores)
    folder, datasets = _model_lineage(cfg)
    size = cfg.aloe_size or size_of(cfg.checkpoint)
    result: dict[str, Any] = {
        "name": cfg.label, "scheme": cfg.scheme,
        "model": {"checkpoint": cfg.checkpoint} if cfg.checkpoint else {"served": cfg.model},
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "config": origin,
        "limit": cfg.limit, "benchmarks": scores, "multimedqa": multimedqa(scores, cfg.limit),
        "datasets": datasets, "lineage": folder,
        "pack": {"root": cfg.benchmark_root} if cfg.benchmark_root else pack_versions(cfg.benchmarks),
        "params": (cfg.sc_cot.model_dump() if cfg.scheme == "sc-cot"
                   else cfg.medprompt.model_dump() if cfg.scheme == "medprompt"
                   else {"max_tokens": cfg.max_tokens, "temperature": 0.0}),
        "aloe_reference": aloe_reference(size), "cache": str(cdir),
        "versions": _versions(), **extra,
    }
    atomic_write(out / EVAL_FILE, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    if records:
        atomic_write(out / f"predictions-{cfg.scheme}.jsonl",
                     "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    if cfg.update_card and folder:
        result["card"] = str(update_card(folder, result))
    return result
