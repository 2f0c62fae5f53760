"""What a build is made of: rows and tokens per source and per sub-task, and the templates used.

Stored in the manifest as `composition` and rendered by the report and the dataset card. Tokens are
`curate.tokens.row_tokens` (the text a row trains on): exact with the build's tokenizer (`--tokenizer`,
else the recipe's `tokenizer:`), else estimated as words + punctuation, and the manifest says which. A
build computes the keys once over its output parts (`curate.runner.tokens`), so these tables and the
manifest's `tokens` always agree.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from curate.tokens import TokenCounter, as_counter, row_tokens


def composition(frame: pl.DataFrame, steps: list[dict[str, Any]],
                tokenizer: str | TokenCounter | None = None) -> dict[str, Any]:
    """{tokens: how counted, by_source / by_subtask: [{name, rows, tokens}], templates: {key:index: rows}}."""
    counter = as_counter(tokenizer)
    return composition_from_keys(token_keys(frame, counter), steps, counter.name)


def token_keys(frame: pl.DataFrame, counter: TokenCounter) -> pl.DataFrame:
    """source, task, subtask ("(none)" when missing) and tokens (Int64) of every row."""
    if frame.height == 0:
        return pl.DataFrame(schema={"source": pl.Utf8, "task": pl.Utf8, "subtask": pl.Utf8, "tokens": pl.Int64})
    return frame.select(
        *[(pl.col(c) if c in frame.columns else pl.lit(None, dtype=pl.Utf8)).fill_null("(none)").alias(c)
          for c in ("source", "task", "subtask")],
        row_tokens(frame, counter).cast(pl.Int64),
    )


def composition_from_keys(keys: pl.DataFrame, steps: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """`composition` from `token_keys` of the rows, or of groups of them with a `rows` column (the runner
    sums each part by source, task and subtask: `curate.runner.tokens`); `name`: how tokens were counted."""
    rows = pl.col("rows").sum() if "rows" in keys.columns else pl.len()

    def table(col: str) -> list[dict[str, Any]]:
        agg = keys.group_by(col).agg(rows.alias("rows"), pl.col("tokens").sum()).sort(col)
        return [{"name": r[col], "rows": int(r["rows"]), "tokens": int(r["tokens"])} for r in agg.iter_rows(named=True)]

    templates: dict[str, int] = {}
    for step in steps:
        for key, n in (step.get("stats") or {}).get("templates_used", {}).items():
            templates[key] = templates.get(key, 0) + int(n)
    return {"tokens": name, "by_source": table("source"),
            "by_subtask": table("subtask"), "templates": templates}


def composition_tables(comp: dict[str, Any], templates: bool = True) -> list[dict[str, Any]]:
    """The report / card tables: title, header, rows (the report has the template step's own table)."""
    out = []
    for key, title in (("by_source", "source"), ("by_subtask", "sub-task")):
        items = comp.get(key) or []
        total_rows = sum(i["rows"] for i in items) or 1
        total_tokens = sum(i["tokens"] for i in items) or 1
        rows = [[i["name"], i["rows"], f"{i['rows'] / total_rows:.1%}", i["tokens"], f"{i['tokens'] / total_tokens:.1%}"]
                for i in items]
        rows.append(["**total**", sum(i["rows"] for i in items), "100%", sum(i["tokens"] for i in items), "100%"])
        out.append({"title": f"Rows and tokens per {title} (tokens: {comp.get('tokens')})",
                    "header": [title, "rows", "share", "tokens", "token share"], "rows": rows})
    if templates and comp.get("templates"):
        by_key: dict[str, list[str]] = {}
        for k, n in sorted(comp["templates"].items(), key=lambda kv: (kv[0].split(":")[0], int(kv[0].split(":")[1]))):
            name, idx = k.split(":")
            by_key.setdefault(name, []).append(f"#{idx}: {n}")
        out.append({"title": "Templates used (template set: rows per template index)",
                    "header": ["template set", "templates used", "rows"],
                    "rows": [[k, len(v), ", ".join(v)] for k, v in by_key.items()]})
    return out
