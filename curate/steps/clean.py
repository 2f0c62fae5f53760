"""clean: Aloe's cleaning pass (arXiv 2505.04388 §3): repair text, drop irrelevant and empty rows.

Repairs (rows are kept; counts per column in stats):
- broken line-break codes: a literal backslash-n / backslash-r-backslash-n left by a bad export (not
  LaTeX), and HTML `<br>` / `</p><p>` tags, become real line breaks, but only in a text that has no
  real line break, no code fence and no `$` or `\\begin`: text that already has line breaks was
  exported right, and code or LaTeX (`\\nu`, `\\neq`) means what it says (LLaMA-Factory's
  kto demo has PHP with `"<br />"` strings and LaTeX `\\\\` rows; both are left alone);
- HTML entities (`&amp;`, `&#39;`, ...) and mojibake (`CafÃ©`, `patientâ€™s`) are fixed with ftfy
  (`fix_text`, quotes left curled, NFC). ftfy runs only on rows a polars regex flags as suspect, so the
  cost is per suspect row, not per row.

Rejects (first matching rule names the reason):
- `empty_question` / `empty_answer`: nothing left to ask or to learn (Aloe drops samples missing
  the question or the answer);
- `irrelevant_text`: the question, or the answer of a non-MCQ row, matches an entry of the
  irrelevant-text lists (`recipes/cleaning/irrelevant_text.txt` by default: whole-field phrases after
  case/punctuation normalisation, and `re:` regexes; see the file's header).

Every text column is repaired, including each turn of `turns` and chat columns.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import polars as pl

from curate.errors import RecipeError
from curate.resources import recipes_dir
from curate.steps import BuildContext, Step, StepParams, StepResult, split_by

#: Literal escape sequences and HTML tags that stand for a line break.
BROKEN_BREAKS = r"(?:\\r)?\\n|(?i)<br\s*/?>|</p>\s*<p[^>]*>"
#: Texts where a backslash or a tag may mean what it says (code, LaTeX), or that have real breaks.
NOT_BROKEN = r"\n|```|\$|\\begin\{|<\?php"
#: Rows that may need ftfy: an HTML entity, or a UTF-8-read-as-Latin-1/cp1252 sequence.
SUSPECT = r"&(?:#\d{1,6}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z]{2,8});|[ÃÂâÅÐÑ][\x{80}-\x{BF}\x{152}\x{153}\x{160}\x{161}\x{178}\x{17D}\x{17E}\x{192}\x{2C6}\x{2DC}\x{2013}-\x{2122}]"
TEXT_COLUMNS = ("question", "context", "answer", "explanation")
CHAT_COLUMNS = ("turns", "prompt", "chosen", "rejected", "messages")


class CleanParams(StepParams):
    #: Irrelevant-text list files: a name under recipes/cleaning/ or a path. [] disables the check.
    irrelevant_lists: list[str] = ["irrelevant_text.txt"]
    repair: bool = True
    reject_empty: bool = True


def _norm_key(expr: pl.Expr) -> pl.Expr:
    return expr.fill_null("").str.to_lowercase().str.replace_all(r"[^\p{L}\p{N}]+", " ").str.strip_chars()


@lru_cache(maxsize=16)
def load_list(name: str) -> tuple[frozenset[str], tuple[str, ...]]:
    """(whole-field phrases normalised, regexes) of one irrelevant-text list file."""
    path = Path(name)
    if not path.is_absolute() and not path.is_file():
        path = recipes_dir() / "cleaning" / name
    if not path.is_file():
        raise RecipeError(f"clean: irrelevant-text list {name!r} not found",
                          hint=f"put the file under {recipes_dir() / 'cleaning'} or give a path")
    phrases, patterns = set(), []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("re:"):
            try:
                re.compile(line[3:])
            except re.error as err:
                raise RecipeError(f"{path} line {n}: bad regex {line[3:]!r}: {err}") from None
            patterns.append(line[3:])
        else:
            phrases.add(re.sub(r"[^\w]+", " ", line.lower().replace("_", " ")).strip())
    return frozenset(phrases), tuple(patterns)


def fix_text(text: str) -> str:
    import ftfy

    return ftfy.fix_text(text, uncurl_quotes=False, normalization="NFC")


def repair_series(s: pl.Series) -> pl.Series:
    """Broken line-break codes (polars), then ftfy on the suspect rows only."""
    plain = ~s.str.contains(NOT_BROKEN).fill_null(True)
    breaks = s.str.replace_all(BROKEN_BREAKS, "\n")
    s = pl.select(pl.when(plain).then(breaks).otherwise(s).alias(s.name)).to_series()
    suspect = s.str.contains(SUSPECT).fill_null(False)
    idx = suspect.arg_true()
    if idx.len():
        s = s.scatter(idx, [fix_text(t) for t in s.gather(idx)])
    return s


def repair_chat(s: pl.Series) -> pl.Series:
    """`repair_series` on every message's content of a List(Struct{role, content}) column."""
    s = s.fill_null(pl.lit([], dtype=s.dtype)) if s.null_count() else s
    lengths = s.list.len().to_list()
    flat = s.explode().drop_nulls()  # empty lists give no row (polars 2) or a null row (polars 1)
    if flat.len() != sum(lengths):
        raise AssertionError("clean: turns could not be flattened")  # pragma: no cover - polars contract
    parts = flat.struct.unnest()
    items = parts.with_columns(repair_series(parts["content"]).alias("content")).to_dicts()
    rows, at = [], 0
    for n in lengths:
        rows.append(items[at:at + n])
        at += n
    return pl.Series(s.name, rows, dtype=s.dtype)


class Clean(Step):
    name = "clean"
    scope = "row"
    Params = CleanParams
    description = "Aloe cleaning: repair line-break codes / entities / mojibake (ftfy); reject empty and irrelevant text."

    def apply(self, frame: pl.DataFrame, ctx: BuildContext) -> StepResult:
        p: CleanParams = self.params
        out, changed = frame, {}
        if p.repair:
            for c in [c for c in TEXT_COLUMNS if c in frame.columns]:
                out = out.with_columns(repair_series(frame[c]).alias(c))
                changed[c] = int(frame[c].ne_missing(out[c]).sum())
            for c in [c for c in CHAT_COLUMNS if c in frame.columns and frame[c].list.len().sum()]:
                out = out.with_columns(repair_chat(frame[c]).alias(c))
                changed[c] = int(frame[c].ne_missing(out[c]).sum())
        phrases: set[str] = set()
        patterns: list[str] = []
        for name in p.irrelevant_lists:
            ph, pa = load_list(name)
            phrases |= ph
            patterns += pa
        blank = lambda c: pl.col(c).is_null() | (pl.col(c).str.strip_chars() == "")  # noqa: E731
        rules: list[tuple[pl.Expr, str, pl.Expr]] = []
        if p.reject_empty:
            rules += [(blank("question"), "empty_question", pl.lit("question is empty after cleaning")),
                      (blank("answer"), "empty_answer", pl.lit("answer is empty after cleaning"))]
        for field, applies in (("question", pl.lit(True)), ("answer", pl.col("task") != "mcq")):
            hit = _norm_key(pl.col(field)).is_in(list(phrases)) if phrases else pl.lit(False)
            if patterns:
                hit = hit | pl.col(field).fill_null("").str.contains("(?i)(?:" + "|".join(patterns) + ")")
            rules.append((applies & hit, "irrelevant_text",
                          pl.lit(f"{field} matches the irrelevant-text list: ") + pl.col(field).str.slice(0, 80)))
        reason = detail = None
        for cond, name, det in rules:
            reason = (pl.when(cond) if reason is None else reason.when(cond)).then(pl.lit(name))
            detail = (pl.when(cond) if detail is None else detail.when(cond)).then(det)
        if reason is None:
            kept, rejected = split_by(out, pl.lit(None, dtype=pl.Utf8))
        else:
            kept, rejected = split_by(out, reason.otherwise(None), detail.otherwise(None))
        counts = rejected["reason"].value_counts(sort=True).rows() if rejected.height else []
        return StepResult(kept=kept, rejected=rejected,
                          stats={"rows_repaired": changed, "rejected": dict(counts),
                                 "irrelevant_lists": list(p.irrelevant_lists)})
