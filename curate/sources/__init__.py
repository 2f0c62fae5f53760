"""Source adapters: raw public QA files (or Hub datasets) -> canonical records + reasoned rejects.

`open_source(spec, base_dir=..., limit=..., path_override=..., batch_rows=...)` picks the adapter named
by the recipe's `format:` and returns a `SourceStream` of `SourceBatch(frame, rejected)` batches read
incrementally (`curate.sources.stream`); `read_source(...)` returns the whole `SourceData`. Adding an adapter is a one-file change: a module in this package that defines an
`Adapter` subclass decorated with `@register_adapter` (every module here is imported on first lookup).

Every raw row read is either a record in `frame` or a row in `rejected` with a reason:
`info["rows"] == frame.height + rejected.height` always holds. Reject reasons used by the adapters:
`malformed_json`, `malformed_csv`, `invalid_utf8`, `malformed_row`, `missing_field`,
`answer_not_in_options`, `ambiguous_answer`, `answer_text_mismatch`, `unlabelled`, `label_conflict`,
`duplicate_source_id`, `invalid_number` (JSON NaN/Infinity, or a number that overflows), `row_too_large`
(above the source's `max_row_bytes`).
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from curate.errors import RecipeError
from curate.recipe import SourceSpec
from curate.sources.base import (
    _REGISTRY,
    REJECT_SCHEMA,
    Adapter,
    RawRow,
    ReadContext,
    Reject,
    SourceData,
    register_adapter,
)
from curate.sources.stream import SourceBatch, SourceStream, open_source

__all__ = [
    "REJECT_SCHEMA", "Adapter", "RawRow", "ReadContext", "Reject", "SourceBatch", "SourceData", "SourceStream",
    "adapter_names", "get_adapter", "open_source", "read_source", "register_adapter",
]

_NOT_ADAPTERS = {"base", "files", "jsonstream", "readers", "stream"}
_discovered = False


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_") and mod.name not in _NOT_ADAPTERS:
            importlib.import_module(f"{__name__}.{mod.name}")


def adapter_names() -> list[str]:
    """The `format:` names a recipe source may use."""
    _discover()
    return sorted(_REGISTRY)


def get_adapter(name: str) -> type[Adapter]:
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise RecipeError(
            f"unknown source format {name!r}", hint=f"known formats: {', '.join(adapter_names())}"
        ) from None


def read_source(
    spec: SourceSpec,
    *,
    base_dir: Path,
    limit: int | None = None,
    path_override: str | Path | None = None,
    allow_unlabelled: bool = False,
    split_override: str | None = None,
) -> SourceData:
    """Read one recipe source whole: every batch of `open_source(...)` concatenated (same arguments)."""
    return open_source(spec, base_dir=base_dir, limit=limit, path_override=path_override,
                       allow_unlabelled=allow_unlabelled, split_override=split_override).read_all()


def _common_root(files: list[Path]) -> Path:
    parts = [f.parent.parts for f in files]
    common = []
    for group in zip(*parts, strict=False):
        if len(set(group)) != 1:
            break
        common.append(group[0])
    return Path(*common)
