"""normalize: Unicode NFC, whitespace, URLs, e-mails and boilerplate, on every text field. Rejects nothing.

Structure is kept (issue 11): in questions, contexts, answers, explanations and chat turns only runs of
spaces and tabs collapse; line ends become LF, spaces around a line break go, and three or more line
breaks become one blank line (a paragraph break). Abstracts, notes and dialogues keep their lines.
Option texts, labels and `subject` are single-line fields and are flattened as before.
"""

from __future__ import annotations

import polars as pl

from curate.steps import BuildContext, Step, StepParams, StepResult, no_rejects

URL = r"(?i)\b(?:https?://|www\.)\S+"
EMAIL = r"(?i)\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"
# Zero-width and BOM characters, soft hyphen; non-breaking and other Unicode spaces become plain spaces.
INVISIBLE = "[\u200b\u200c\u200d\u2060\ufeff\u00ad]"
SPACES = "[\u00a0\u2000-\u200a\u202f\u205f\u3000\t\r\n\f\v ]+"
#: Horizontal whitespace only (everything in SPACES but line breaks).
HSPACES = "[\u00a0\u2000-\u200a\u202f\u205f\u3000\t\f\v ]+"
LINE_BREAKS = "\r\n?|[\u2028\u2029\u0085]"
#: Default boilerplate: reference trailers and answer-key lead-ins that leak into explanations,
#: and common HTML entities left over from scraping.
DEFAULT_BOILERPLATE = [
    r"(?i)\s*\(?\b(?:ref|reference|source)s?\s*[:\-–]\s*[^()]*\)?\s*$",
    r"(?i)^\s*ans(?:wer)?\.?\s*(?:is|:|-)\s*['‘’\"]?[a-e]['‘’\"]?\s*(?:i\.?\s*e\.?,?|,|\.|:|-)?\s*",
]
HTML_ENTITIES = {"&nbsp;": " ", "&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&#39;": "'"}


class NormalizeParams(StepParams):
    strip_urls: bool = True
    strip_emails: bool = True
    #: Regexes removed from the explanation field (set [] to keep explanations verbatim).
    explanation_boilerplate: list[str] = DEFAULT_BOILERPLATE
    #: Regexes removed from every text field.
    boilerplate: list[str] = []
    #: Keep line breaks and paragraphs in multi-line fields (False: every newline becomes a space).
    keep_line_breaks: bool = True


def _clean(expr: pl.Expr, p: NormalizeParams, extra: list[str] = (), *, lines: bool = False) -> pl.Expr:
    expr = expr.str.normalize("NFC").str.replace_all(INVISIBLE, "")
    for entity, repl in HTML_ENTITIES.items():
        expr = expr.str.replace_all(entity, repl, literal=True)
    if p.strip_urls:
        expr = expr.str.replace_all(URL, "")
    if p.strip_emails:
        expr = expr.str.replace_all(EMAIL, "")
    for pattern in [*p.boilerplate, *extra]:
        expr = expr.str.replace_all(pattern, "")
    if lines and p.keep_line_breaks:
        expr = (expr.str.replace_all(LINE_BREAKS, "\n").str.replace_all(HSPACES, " ")
                .str.replace_all(" ?\n ?", "\n").str.replace_all("\n{3,}", "\n\n"))
        return expr.str.strip_chars()
    return expr.str.replace_all(SPACES, " ").str.strip_chars()


class Normalize(Step):
    name = "normalize"
    scope = "row"
    Params = NormalizeParams
    description = "Unicode NFC, whitespace, strip URLs / e-mails / boilerplate in all text fields."

    def apply(self, frame: pl.DataFrame, ctx: BuildContext) -> StepResult:
        p: NormalizeParams = self.params
        text_cols = [c for c in ("question", "context", "answer", "subject") if c in frame.columns]
        option = pl.element().struct
        out = frame.with_columns(
            *[_clean(pl.col(c), p, lines=c != "subject").alias(c) for c in text_cols],
            _clean(pl.col("explanation"), p, p.explanation_boilerplate, lines=True).alias("explanation"),
            pl.col("options").list.eval(
                pl.struct(
                    _clean(option.field("label"), p).alias("label"),
                    _clean(option.field("text"), p).alias("text"),
                )
            ),
        )
        # Chat columns (imported preference pairs, pre-templated data): clean each message's content.
        chats = [c for c in ("turns", "prompt", "chosen", "rejected", "messages") if c in frame.columns]
        out = out.with_columns(
            pl.col(c).list.eval(pl.struct(option.field("role"),
                                          _clean(option.field("content"), p, lines=True).alias("content")))
            for c in chats
        )
        # Explanations that were only boilerplate become null rather than "".
        out = out.with_columns(
            pl.when(pl.col("explanation").str.len_chars() > 0).then(pl.col("explanation")).alias("explanation")
        )
        changed = {c: int(frame[c].ne_missing(out[c]).sum()) for c in [*text_cols, "explanation", "options", *chats]}
        return StepResult(kept=out, rejected=no_rejects(frame), stats={"rows_changed": changed})
