"""Columnar rendering for the `template` step: polars expressions instead of a Python loop per row.

Profile of a 100k-row MedMCQA-shaped build (issue 12): the per-row loop (iter_rows + str.format +
building message dicts + Series from Python objects) was the template step's cost. Here each
(template key, index) group is rendered with one `concat_str` of the template's literal pieces and the
row's columns, and messages are built as list-of-struct columns. Only the template index stays per row
(sha256 of seed:id, ~1 µs a row). Output is identical to `str.format(...).strip()` and the old
`gold_text` (tested against a reference loop in tests/test_template_render.py); a template with a format
spec or conversion (`{question!r}`, `{question:>10}`) falls back to `str.format` for its group.
"""

from __future__ import annotations

import string

import polars as pl

from curate.record import MESSAGE

FIELDS = ("question", "options", "context")
# the characters Python's str.strip() removes (str.isspace; none above U+3000), so polars strips the same
PY_WHITESPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())


def choose_all(ids: list[str], seed: int, ns: list[int]) -> list[int]:
    """`template.choose(id, seed, n)` for a column of ids and their template counts."""
    from curate.steps.template import choose

    return [choose(i, seed, n) for i, n in zip(ids, ns, strict=True)]


def _opt(field: str) -> pl.Expr:
    return pl.element().struct.field(field).cast(pl.Utf8).fill_null("None")


def options_text() -> pl.Expr:
    """`render_options`: "A. text" lines; "" for null or empty options."""
    return (pl.col("options").list.eval(pl.concat_str(_opt("label"), pl.lit(". "), _opt("text")))
            .list.join("\n").fill_null(""))


def _fill(template: str, cols: dict[str, pl.Expr]) -> pl.Expr | None:
    """The template as one concat_str, or None when it needs str.format (spec, conversion, other fields)."""
    pieces: list[pl.Expr] = []
    for literal, field, spec, conv in string.Formatter().parse(template):
        if literal:
            pieces.append(pl.lit(literal))
        if field is None:
            continue
        if spec or conv or field not in cols:
            return None
        pieces.append(cols[field])
    return pl.concat_str(pieces) if pieces else pl.lit("")


def _format_rows(frame: pl.DataFrame, template: str) -> pl.Series:
    rows = frame.select("question", "context", "_options").iter_rows()
    return pl.Series([template.format(question=q or "", options=o, context=c or "") for q, c, o in rows],
                     dtype=pl.Utf8)


def user_text(frame: pl.DataFrame, table: dict[str, list[str]], seed: int) -> tuple[pl.Series, pl.Series]:
    """(user turn, "key:index" chosen) for every row, in row order."""
    key = (pl.when((pl.col("task") == "open_qa") & (pl.col("context").fill_null("") != ""))
           .then(pl.lit("open_qa_context")).otherwise(pl.col("task")))
    keyed = frame.select("id", "task", "question", "context", key.alias("_key"), options_text().alias("_options"))
    keyed = keyed.with_row_index("_row")
    n_of = {k: len(table.get(k) or table["open_qa"]) for k in keyed["_key"].unique().to_list()}
    idx = choose_all(keyed["id"].to_list(), seed, [n_of[k] for k in keyed["_key"].to_list()])
    keyed = keyed.with_columns(pl.Series("_idx", idx, dtype=pl.Int64))
    cols = {"question": pl.col("question").fill_null(""), "options": pl.col("_options"),
            "context": pl.col("context").fill_null("")}
    parts = []
    for (k, i), group in keyed.group_by("_key", "_idx", maintain_order=True):
        template = (table.get(k) or table["open_qa"])[i]
        expr = _fill(template, cols)
        text = group.select(expr).to_series() if expr is not None else _format_rows(group, template)
        parts.append(group.select("_row").with_columns(text.alias("_user")))
    users = pl.concat(parts).sort("_row")["_user"].str.strip_chars(PY_WHITESPACE)
    chosen = keyed.select(pl.format("{}:{}", pl.col("_key").fill_null("None"), pl.col("_idx")))
    return users, chosen.to_series()


def gold_text(frame: pl.DataFrame) -> pl.Series:
    """`template.gold_text` for every row: `Answer: C. text` (mcq), `Answer: yes` (yes/no/maybe), else answer."""
    opts = (frame.select(pl.int_range(pl.len()).alias("_row"), "answer", "options").explode("options")
            .filter(pl.col("options").struct.field("label") == pl.col("answer"))
            .group_by("_row").agg(pl.col("options").struct.field("text").first().alias("_text")))
    text = (frame.select(pl.int_range(pl.len()).alias("_row"))
            .join(opts, on="_row", how="left", maintain_order="left")["_text"].fill_null(""))
    mcq = pl.concat_str(pl.lit("Answer: "), pl.col("answer").cast(pl.Utf8).fill_null("None"), pl.lit(". "),
                        pl.col("_text")).str.strip_chars_end(PY_WHITESPACE)
    return frame.with_columns(text.alias("_text")).select(
        pl.when(pl.col("task") == "mcq").then(mcq)
        .when(pl.col("task") == "yes_no_maybe").then(pl.lit("Answer: ") + pl.col("answer").str.to_lowercase())
        .otherwise(pl.col("answer").fill_null(""))
    ).to_series()


def assistant_text(frame: pl.DataFrame, include_explanation: bool) -> pl.Series:
    """The teacher's `cot` when present and non-empty, else the gold text (+ explanation unless open_qa)."""
    gold = gold_text(frame)
    expl = pl.col("explanation").fill_null("")
    with_expl = (pl.when(pl.lit(include_explanation) & (expl != "") & (pl.col("task").fill_null("") != "open_qa"))
                 .then(pl.concat_str(pl.col("_gold"), pl.lit("\n\n"), expl)).otherwise(pl.col("_gold")))
    if "cot" in frame.columns:
        with_expl = pl.when(pl.col("cot").fill_null("") != "").then(pl.col("cot")).otherwise(with_expl)
    return frame.with_columns(gold.alias("_gold")).select(with_expl).to_series()


def render_messages(frame: pl.DataFrame, table: dict[str, list[str]], seed: int, system_prompt: str | None,
                    include_explanation: bool) -> tuple[pl.Series, pl.Series]:
    """(`messages` column, chosen "key:index" per row)."""
    if frame.height == 0:
        return pl.Series("messages", [], dtype=pl.List(MESSAGE)), pl.Series([], dtype=pl.Utf8)
    users, chosen = user_text(frame, table, seed)
    turns = pl.DataFrame({"_user": users, "_assistant": assistant_text(frame, include_explanation)})
    msg = [pl.struct(role=pl.lit("user"), content=pl.col("_user")),
           pl.struct(role=pl.lit("assistant"), content=pl.col("_assistant"))]
    if system_prompt:
        msg.insert(0, pl.struct(role=pl.lit("system"), content=pl.lit(system_prompt)))
    messages = turns.select(pl.concat_list(msg).cast(pl.List(MESSAGE)).alias("messages")).to_series()
    return messages, chosen
