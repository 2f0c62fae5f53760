"""Build-level rules checked after the build folder is written, before `LATEST` moves.

Empty result (issue 10): a build with no rows out (every source row rejected, or a teacher that failed on
every call) used to exit 0, move `LATEST` and be pushable as an empty version; and a source whose every row
was rejected stopped with "the sources produced no rows", throwing its rejects away. Now the build folder is
still written (data, `rejects/`, `report.md`: the evidence), but the build fails, `LATEST` stays where it
was, and the error names each stage that emptied the data with its reason counts and a few example rows.
`--allow-empty` accepts an empty result on purpose.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from curate.errors import MedcurateError
from curate.redact import short_reason
from curate.reject_summary import RejectSummary, as_summaries

log = logging.getLogger("medcurate.build")

#: How many reasons and example rows the error shows per stage.
TOP_REASONS, EXAMPLES = 3, 3


class EmptyBuildError(MedcurateError):
    """The build produced no rows and the user did not allow an empty result."""


Rejects = Mapping[str, RejectSummary | pl.DataFrame]  # by stage: a summary (the runner) or a whole frame


def _examples(rejected: RejectSummary) -> list[str]:
    out = []
    for row in rejected.head.head(EXAMPLES).iter_rows(named=True):
        where = f"row {row['source_row']}" if row.get("source_row") is not None else f"id {row.get('id')}"
        out.append(f"      {where}: {row['reason']}: {short_reason(str(row.get('detail') or ''), 140)}")
    return out


def _stage_lines(name: str, what: str, rejected: RejectSummary, reasons: dict[str, int]) -> list[str]:
    top = ", ".join(f"{r} {n}" for r, n in list(reasons.items())[:TOP_REASONS])
    return [f"  {what} {name}: all {rejected.height} rows rejected ({top}); e.g.", *_examples(rejected)]


def emptied_sources(sources: list[dict[str, Any]], rejects: Rejects) -> list[str]:
    """Lines naming each source file whose every row was rejected, with reason counts and example rows."""
    rejects = as_summaries(rejects)
    lines: list[str] = []
    for src in sources:
        rej = rejects.get(f"source-{src['name']}")
        if src.get("rows") and not src.get("rows_kept") and rej is not None:
            lines += _stage_lines(f"{src['name']!r} ({src.get('uri')})", "source", rej, src.get("reasons") or {})
    return lines


def warn_emptied_sources(sources: list[dict[str, Any]], rejects: Rejects) -> None:
    """Log a warning for a source that lost every row while other sources kept theirs (the build goes on)."""
    lines = emptied_sources(sources, rejects)
    if lines and any(s.get("rows_kept") for s in sources):
        log.warning("a source lost every row (see rejects/):\n%s", "\n".join(lines))


def explain_empty(manifest: dict[str, Any], rejects: Rejects) -> list[str]:
    """Lines naming each source file and step that removed every row it received, with reasons and examples."""
    rejects = as_summaries(rejects)
    lines = emptied_sources(manifest.get("sources") or [], rejects)
    for step in manifest.get("steps") or []:
        rej = rejects.get(step["name"])
        if step["rows_in"] and not step["rows_kept"] and rej is not None:
            what = "step"
            failures = ((step.get("stats") or {}).get("client") or {}).get("failures")
            if failures:
                what = f"teacher failed on every call ({failures} failures) in step"
            lines += _stage_lines(repr(step["name"]), what, rej, step.get("reasons") or {})
    return lines


def check_not_empty(manifest: dict[str, Any], rejects: Rejects, *, path: Path,
                    allow_empty: bool) -> None:
    """Raise EmptyBuildError when the build has no rows out, unless `allow_empty`."""
    if manifest.get("rows_out") or allow_empty:
        return
    if not manifest.get("rows_in"):
        raise EmptyBuildError("the sources produced no rows", hint=f"check the source files and --limit (the "
                              f"empty build is in {path}; LATEST was not moved), or pass --allow-empty")
    lines = explain_empty(manifest, rejects) or ["  (no single stage removed every row)"]
    raise EmptyBuildError(
        f"the build produced no rows ({manifest.get('rows_in', 0)} rows in, all rejected):\n" + "\n".join(lines),
        hint=f"the rejects and report.md are in {path} (LATEST was not moved); fix the cause above, "
        "or pass --allow-empty to accept an empty build",
    )
