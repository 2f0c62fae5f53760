"""Source adapters: raw public QA files (or Hub datasets) -> canonical records + reasoned rejects.

`read_source(spec, base_dir=..., limit=..., path_override=...)` picks the adapter named by the
recipe's `format:`. Adding an adapter is a one-file change: a module in this package that defines an
`Adapter` subclass decorated with `@register_adapter` (every module here is imported on first lookup).

Every raw row read is either a record in `frame` or a row in `rejected` with a reason:
`info["rows"] == frame.height + rejected.height` always holds. Reject reasons used by the adapters:
`malformed_json`, `malformed_csv`, `invalid_utf8`, `malformed_row`, `missing_field`,
`answer_not_in_options`, `ambiguous_answer`, `answer_text_mismatch`, `unlabelled`, `label_conflict`,
`duplicate_source_id`.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import pkgutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from curate.errors import InputError, RecipeError
from curate.recipe import SourceSpec
from curate.record import to_frame
from curate.sources.base import (
    _REGISTRY,
    REJECT_SCHEMA,
    Adapter,
    RawRow,
    ReadContext,
    Reject,
    SourceData,
    register_adapter,
    subtask_of,
)
from curate.sources.files import files_sha256, load_hub, resolve_files

__all__ = [
    "REJECT_SCHEMA", "Adapter", "RawRow", "ReadContext", "Reject", "SourceData", "adapter_names",
    "get_adapter", "read_source", "register_adapter",
]

_NOT_ADAPTERS = {"base", "files"}
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
) -> SourceData:
    """Read one recipe source into canonical records and reasoned rejects.

    `path_override` (the CLI's `--source NAME=PATH`, relative to the cwd) beats the recipe's `path`
    (relative to `base_dir`, the recipe's folder), which beats `hub`. `limit` keeps the first N raw rows.
    `allow_unlabelled` keeps rows without a gold answer (benchmark test splits read for decontamination).
    """
    if limit is not None and limit < 0:
        raise InputError(f"limit must be >= 0, got {limit}")
    cls = get_adapter(spec.format)
    files = cls.locate(spec, Path(base_dir), path_override)
    if files is None:
        files = resolve_files(spec, Path(base_dir), path_override, cls.folder_glob)
    split = spec.split
    if files is not None:
        ctx = ReadContext(spec=spec, files=files, split=split, allow_unlabelled=allow_unlabelled)
        adapter = cls(ctx)
        raws: Iterator[RawRow] = itertools.chain.from_iterable(adapter.read_file(f) for f in files)
        info: dict[str, Any] = {
            "name": spec.name, "format": spec.format, "uri": str(files[0]),
            "sha256": files_sha256(files), "revision": None,
        }
        if len(files) > 1:
            root = _common_root(files)
            info["uri"] = str(root)
            info["files"] = [str(f.relative_to(root)) for f in files]
    else:
        ds = load_hub(spec, limit)
        ctx = ReadContext(spec=spec, files=[], split=split, from_hub=True, allow_unlabelled=allow_unlabelled)
        adapter = cls(ctx)
        raws = adapter.read_hub(ds)
        repo, rev = spec.hub_repo  # type: ignore[misc]
        # The revision pins the repo; `datasets`' fingerprint of the loaded split pins its content.
        fingerprint = getattr(ds, "_fingerprint", None) or ""
        ident = f"{repo}@{rev or ''}:{spec.config or ''}:{split}:{fingerprint}"
        info = {
            "name": spec.name, "format": spec.format, "uri": f"hf://datasets/{repo}",
            "sha256": hashlib.sha256(ident.encode()).hexdigest(), "revision": rev,
            "config": spec.config, "fingerprint": fingerprint or None,
        }
    if limit is not None:
        raws = itertools.islice(raws, limit)

    multi = files is not None and len(files) > 1
    records: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    missing_fields: Counter[str] = Counter()
    first_row_of: dict[str, int] = {}
    n = 0
    for n, row in enumerate(raws, 1):  # noqa: B007 - n is the row count after the loop
        try:
            if row.error is not None:
                raise row.error
            try:
                rec = adapter.convert(row.obj)
            except (TypeError, ValueError, AttributeError, KeyError, IndexError) as err:
                # a row shaped unlike anything the adapter knows: a reject with the reason, not a traceback
                raise Reject("malformed_row", f"unexpected structure ({type(err).__name__}: {err})") from None
            sid = rec.get("source_id")
            sid = str(n) if sid is None else str(sid)
            if sid in first_row_of:
                raise Reject("duplicate_source_id",
                             f"source_id {sid!r} was already read at row {first_row_of[sid]}")
            first_row_of[sid] = n
        except Reject as rej:
            if rej.reason == "missing_field" and rej.field:
                missing_fields[rej.field] += 1
            detail = rej.detail
            if multi and row.where and not detail.startswith(row.where):
                if detail.startswith("line ") and ": " in detail:  # the location names the line already
                    detail = detail.split(": ", 1)[1]
                detail = f"{row.where}: {detail}"
            rejects.append({"source": spec.name, "source_row": n, "raw": row.text(),
                            "reason": rej.reason, "detail": detail})
            continue
        rec["source_id"] = sid
        rec["source"] = spec.name
        rec.setdefault("source_split", split)
        rec["subtask"] = subtask_of(rec, spec)
        records.append(rec)
    adapter.finish()

    # A field missing from every row is a wrong format or column mapping, not a bad row.
    if n and not records and len(missing_fields) == 1 and sum(missing_fields.values()) == len(rejects):
        (fname, _), = missing_fields.items()
        where = str(files[0]) if files else str(spec.hub)
        raise InputError(
            f"required field missing in all {n} rows read", file=where, field=fname,
            hint=(f"is this really a {spec.format!r} source? Check the source's `format:`"
                  + (" and its `columns:` mapping" if spec.columns else "")),
        )

    frame = to_frame(records)
    if adapter.extra_columns:
        frame = frame.with_columns(
            pl.Series(name, [r.get(name) for r in records], dtype=dtype)
            for name, dtype in adapter.extra_columns.items()
        )
    rejected = pl.DataFrame(rejects, schema=REJECT_SCHEMA)
    info.update(rows=n, split=split, license=spec.license)
    assert info["rows"] == frame.height + rejected.height
    return SourceData(frame=frame, rejected=rejected, info=info)


def _common_root(files: list[Path]) -> Path:
    parts = [f.parent.parts for f in files]
    common = []
    for group in zip(*parts, strict=False):
        if len(set(group)) != 1:
            break
        common.append(group[0])
    return Path(*common)
