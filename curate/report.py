"""report.md for a build: the funnel, reasons by count, decontamination and dedup tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from curate.reject_summary import RejectSummary, as_summaries


def _table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def funnel_rows(manifest: dict[str, Any]) -> list[list[Any]]:
    rows = [[f"source `{s['name']}`", s["rows"], s["rows_kept"], s["rows_rejected"], s.get("seconds", "")]
            for s in manifest["sources"]]
    rows += [[f"`{s['name']}`", s["rows_in"], s["rows_kept"], s["rows_rejected"], s["seconds"]]
             for s in manifest["steps"]]
    return rows


def tokens_section(tokens: dict[str, Any] | None) -> list[str]:
    """## Tokens: total and per source / task / subtask, when the recipe names a tokenizer."""
    if not tokens:
        return []
    rows = [["total", "", tokens["total"]]]
    for key in ("source", "task", "subtask"):
        rows += [[key, k, v] for k, v in (tokens.get(f"by_{key}") or {}).items()]
    return ["", "## Tokens", "", f"Tokenizer `{tokens['tokenizer']}`; the text each row trains on, no chat template.", "",
            _table(["by", "value", "tokens"], rows)]


def render_report(manifest: dict[str, Any],
                  rejects: Mapping[str, RejectSummary | pl.DataFrame] | None = None) -> str:
    """report.md; `rejects`: each stage's `RejectSummary` (what the examples section shows) or whole frame."""
    m = manifest
    parts = [
        f"# Build report: {m['name']} `{m.get('build_id', '')}`",
        "",
        f"Recipe `{m['recipe']['name']}` (sha256 `{m['recipe']['sha256'][:12]}`), seed {m['seed']}"
        + (f", limit {m['limit']}" if m.get("limit") else "") + ".",
        "",
        f"**{m['rows_in']} rows in"
        + (f" + {m['rows_added']} added by expanding steps" if m.get("rows_added") else "")
        + f" → {m['rows_out']} kept, {m['rows_rejected']} rejected** "
        "(every rejected row is in `rejects/` with its step and reason).",
        "",
        "## Funnel",
        "",
        _table(["stage", "rows in", "kept", "rejected", "seconds"], funnel_rows(m)),
        "",
        "## Rejections by reason",
        "",
    ]
    reason_rows = [[f"source `{s['name']}`", r, n] for s in m["sources"] for r, n in (s.get("reasons") or {}).items()]
    reason_rows += [[f"`{s['name']}`", r, n] for s in m["steps"] for r, n in s["reasons"].items()]
    parts.append(_table(["stage", "reason", "rows"], reason_rows) if reason_rows else "No rows were rejected.")
    parts += tokens_section(m.get("tokens"))
    for step in m["steps"]:
        bench = step.get("stats", {}).get("benchmarks")
        if bench:
            parts += ["", f"## Decontamination (`{step['name']}`)", ""]
            rows = [[name, "yes" if b.get("found", True) else "**not found**", b.get("rows", ""),
                     b.get("checked", ""), b.get("hits", b.get("rephrased_hits", "")),  # rephrase pass: its hits
                     f"{b['hit_rate']:.2%}" if isinstance(b.get("hit_rate"), float) else ""]
                    for name, b in bench.items()]
            parts.append(_table(["benchmark", "found", "benchmark rows", "rows checked", "hits", "hit rate"], rows))
            params = {k: v for k, v in step["params"].items() if not isinstance(v, (dict, list))}
            if params:
                parts += ["", "Parameters: " + ", ".join(f"`{k}={v}`" for k, v in params.items())]
        if step["name"] == "dedup" or "minhash" in step.get("stats", {}):
            stats = step.get("stats", {})
            flat = {**{k: v for k, v in step["params"].items() if not isinstance(v, (dict, list))},
                    **{k: v for k, v in stats.items() if not isinstance(v, (dict, list))}}
            for k, v in (stats.get("minhash") or {}).items():
                flat[f"minhash.{k}"] = v
            parts += ["", f"## Deduplication (`{step['name']}`)", "",
                      _table(["parameter", "value"], [[k, v] for k, v in flat.items()])]
    if m.get("composition"):
        from curate.composition import composition_tables

        for t in composition_tables(m["composition"], templates=False):
            parts += ["", f"## {t['title']}", "", _table(t["header"], t["rows"])]
    for step in m["steps"]:
        for t in step.get("stats", {}).get("report_tables") or []:
            parts += ["", f"## {t['title']} (`{step['name']}`)", "", _table(t["header"], t["rows"])]
    if m.get("teacher"):
        t = m["teacher"]
        parts += ["", "## Teacher", "", f"Model `{t.get('model')}`, params `{t.get('params')}`"]
    if rejects:
        parts += ["", "## Examples of rejected rows", ""]
        for stage, summary in as_summaries(rejects).items():
            for row in summary.reasons(5):
                reason = row["reason"]
                text = str(row.get("question") or row.get("raw") or "")[:120].replace("|", "\\|").replace("\n", " ")
                detail = str(row.get("detail") or "")[:120].replace("|", "\\|")
                parts.append(f"- `{stage}` / `{reason}`: {text} — {detail}")
    parts.append("")
    return "\n".join(parts)
