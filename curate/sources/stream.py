"""The streaming source driver: `open_source(spec, ...) -> SourceStream` of `SourceBatch(frame, rejected)`.

A stream reads its files lazily, converts each raw row with the adapter and yields batches of at most
`batch_rows` canonical records (plus the rejects of the same raw rows), so a consumer holds one batch
at a time: memory depends on `batch_rows` (default 50,000) and on the duplicate-id set (one entry per
row read), not on the file size. `stream.info` is complete once iteration ends: `rows` read, and the
`sha256` of the bytes actually read (a file appended to during the read is hashed as it was parsed;
a read stopped early by `limit` hashes the bytes read so far and says `complete: false`).

Per raw row, in order: a read error -> its reject; a row larger than the spec's `max_row_bytes`
(default 1,000,000) -> `row_too_large` (JSON lines and CSV measure the raw line, JSON documents the
element's characters, parquet and Hub rows the record's text); `adapter.convert` -> a record or a
`Reject`; a `source_id` seen before -> `duplicate_source_id`. `rows == kept + rejected` always holds,
per batch and in total.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl

from curate.errors import InputError
from curate.fsutil import sha256_file
from curate.recipe import SourceSpec
from curate.record import to_frame
from curate.sources.base import REJECT_SCHEMA, Adapter, RawRow, ReadContext, Reject, SourceData
from curate.sources.readers import CURRENT_LOG, ReadLog

#: Raw text kept in a `row_too_large` reject (the row itself is what was too large).
_RAW_KEEP = 4000
_CONVERT_ERRORS = (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError)


class SourceBatch(NamedTuple):
    """One batch of a source: canonical records (+ adapter extras) and the rejects (REJECT_SCHEMA)."""

    frame: pl.DataFrame
    rejected: pl.DataFrame


def _clip(text: str, size: int | None = None) -> str:
    if len(text) <= _RAW_KEEP:
        return text
    return f"{text[:_RAW_KEEP]}… [{size or len(text)} in all; the rest is not kept]"


def _record_chars(rec: dict[str, Any]) -> int:
    n = sum(len(v) for v in rec.values() if isinstance(v, str))
    return n + sum(len(o.get("text") or "") for o in rec.get("options") or () if isinstance(o, dict))


class SourceStream:
    """An iterable of `SourceBatch`; iterate it once. `info` is complete when the iteration ends."""

    def __init__(self, spec: SourceSpec, adapter: Adapter, files: list[Path] | None, raws: Iterator[RawRow],
                 info: dict[str, Any], *, limit: int | None, batch_rows: int):
        self.spec, self.adapter, self.files = spec, adapter, files
        self._raws, self._limit, self.batch_rows = raws, limit, batch_rows
        self.info = info
        self.log = ReadLog()
        self._started = False
        self.max_row_bytes: int | None = getattr(spec, "max_row_bytes", None)

    @property
    def extra_columns(self) -> dict[str, pl.DataType]:
        return dict(self.adapter.extra_columns)

    def read_all(self) -> SourceData:
        """Every batch concatenated: what `read_source` returns."""
        frames, rejects = [], []
        for batch in self:
            frames.append(batch.frame)
            rejects.append(batch.rejected)
        frame = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
        rejected = pl.concat(rejects, how="vertical") if len(rejects) > 1 else rejects[0]
        assert self.info["rows"] == frame.height + rejected.height
        return SourceData(frame=frame, rejected=rejected, info=self.info)

    # --- iteration -------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[SourceBatch]:
        if self._started:
            raise RuntimeError(f"source {self.spec.name!r}: a SourceStream can be iterated only once")
        self._started = True
        raws: Iterator[RawRow] = self._raws
        if self._limit is not None:
            raws = itertools.islice(raws, self._limit)
        self._n = 0
        self._first_row_of: dict[str, int] = {}
        self._missing: Counter[str] = Counter()
        self._kept = self._rejected = 0
        multi = self.files is not None and len(self.files) > 1
        yielded = False
        try:
            while True:
                token = CURRENT_LOG.set(self.log)
                try:
                    batch, more = self._batch(raws, multi)
                finally:
                    CURRENT_LOG.reset(token)
                if not more:
                    self._finish()  # errors about the whole source come before the last batch
                if batch.frame.height or batch.rejected.height or (not more and not yielded):
                    yielded = True
                    yield batch
                if not more:
                    return
        finally:
            close = getattr(self._raws, "close", None)
            if close is not None:
                close()  # a stopped read (limit, consumer break) closes its files now

    def _batch(self, raws: Iterator[RawRow], multi: bool) -> tuple[SourceBatch, bool]:
        records: list[dict[str, Any]] = []
        rows_of: list[int] = []
        rejects: list[dict[str, Any]] = []
        adapter, name, split, max_bytes = self.adapter, self.spec.name, self.spec.split, self.max_row_bytes
        first_row_of = self._first_row_of
        more = False
        for row in raws:
            self._n += 1
            n = self._n
            try:
                if row.error is not None:
                    raise row.error
                if max_bytes is not None and row.size is not None and row.size > max_bytes:
                    raise Reject("row_too_large", f"the row is {row.size:,} long, above max_row_bytes "
                                                  f"{max_bytes:,} (set `max_row_bytes:` on the source to allow it)")
                try:
                    rec = adapter.convert(row.obj)
                except _CONVERT_ERRORS as err:
                    # a row shaped unlike anything the adapter knows: a reject with the reason, not a traceback
                    raise Reject("malformed_row", f"unexpected structure ({type(err).__name__}: {err})"[:500]) from None
                if max_bytes is not None and row.size is None:
                    chars = _record_chars(rec)
                    if chars > max_bytes:
                        raise Reject("row_too_large", f"the record's text is {chars:,} characters, above "
                                                      f"max_row_bytes {max_bytes:,}")
                sid = rec.get("source_id")
                sid = str(n) if sid is None else str(sid)
                if sid in first_row_of:
                    raise Reject("duplicate_source_id",
                                 f"source_id {sid!r} was already read at row {first_row_of[sid]}")
                first_row_of[sid] = n
            except Reject as rej:
                rejects.append(self._reject(row, n, rej, multi))
            else:
                rec["source_id"] = sid
                rec["source"] = name
                rec.setdefault("source_split", split)
                records.append(rec)
                rows_of.append(n)
            if len(records) + len(rejects) >= self.batch_rows:
                more = True
                break
        frame = self._frame(records, rows_of, rejects)
        rejected = pl.DataFrame(rejects, schema=REJECT_SCHEMA)
        self._kept += frame.height
        self._rejected += rejected.height
        return SourceBatch(frame, rejected), more

    def _reject(self, row: RawRow, n: int, rej: Reject, multi: bool) -> dict[str, Any]:
        if rej.reason == "missing_field" and rej.field:
            self._missing[rej.field] += 1
        detail = rej.detail
        if multi and row.where and not detail.startswith(row.where):
            if detail.startswith("line ") and ": " in detail:  # the location names the line already
                detail = detail.split(": ", 1)[1]
            detail = f"{row.where}: {detail}"
        try:
            raw = row.text()
        except (RecursionError, ValueError, TypeError):
            raw = f"<row not serialisable: {rej.reason}>"
        if rej.reason == "row_too_large":
            raw = _clip(raw, row.size)
        return {"source": self.spec.name, "source_row": n, "raw": raw, "reason": rej.reason, "detail": detail}

    def _frame(self, records: list[dict[str, Any]], rows_of: list[int], rejects: list[dict[str, Any]]) -> pl.DataFrame:
        """Canonical frame of a batch; a record polars cannot hold (e.g. a lone surrogate) becomes a reject."""
        try:
            return self._to_frame(records)
        except Exception:  # noqa: BLE001 - isolate the offending records below, then build again
            good, good_rows = [], []
            for rec, n in zip(records, rows_of, strict=True):
                try:
                    self._to_frame([rec])
                except Exception as err:  # noqa: BLE001
                    from curate.sources.files import dump

                    rejects.append({"source": self.spec.name, "source_row": n, "raw": _clip(dump(rec)),
                                    "reason": "malformed_row",
                                    "detail": f"a field cannot be stored ({type(err).__name__}: {str(err)[:200]})"})
                    self._first_row_of.pop(str(rec.get("source_id")), None)
                else:
                    good.append(rec)
                    good_rows.append(n)
            rejects.sort(key=lambda r: r["source_row"])
            return self._to_frame(good)

    def _to_frame(self, records: list[dict[str, Any]]) -> pl.DataFrame:
        frame = to_frame(records)
        extras = self.adapter.extra_columns
        if extras:
            frame = frame.with_columns(
                pl.Series(name, [r.get(name) for r in records], dtype=dtype) for name, dtype in extras.items()
            )
        return frame

    def _finish(self) -> None:
        self.adapter.finish()
        n = self._n
        # A field missing from every row is a wrong format or column mapping, not a bad row.
        if (n and not self._kept and len(self._missing) == 1
                and sum(self._missing.values()) == self._rejected + 0):
            (fname, _), = self._missing.items()
            where = str(self.files[0]) if self.files else str(self.spec.hub)
            raise InputError(
                f"required field missing in all {n} rows read", file=where, field=fname,
                hint=(f"is this really a {self.spec.format!r} source? Check the source's `format:`"
                      + (" and its `columns:` mapping" if self.spec.columns else "")),
            )
        self.info.update(rows=n, split=self.spec.split, license=self.spec.license)
        if self.files is not None:
            self.info.update(self._hash_info())

    def _hash_info(self) -> dict[str, Any]:
        """sha256 of the bytes read (one file), or of the names and digests of several files."""
        assert self.files is not None
        stopped = self._limit is not None and self._n >= self._limit
        digests: list[tuple[Path, str]] = []
        total, complete = 0, True
        for f in self.files:
            read = self.log.files.get(f.resolve())
            if read is not None:
                digests.append((f, read.sha256))
                total += read.bytes
                complete = complete and read.eof
            elif stopped:
                complete = False  # never reached: the limit stopped the read before this file
            else:
                digests.append((f, sha256_file(f)))  # read by other means (e.g. a build's parquet)
                total += f.stat().st_size
        if len(self.files) == 1 and digests:
            sha = digests[0][1]
        else:
            listing = "".join(f"{f.name}\t{d}\n" for f, d in digests)
            sha = hashlib.sha256(listing.encode()).hexdigest()
        out: dict[str, Any] = {"sha256": sha, "bytes_read": total}
        if not complete:
            out["complete"] = False
        return out


def file_rows(adapter: Adapter, files: list[Path]) -> Iterator[RawRow]:
    """The raw rows of every file in order (each file opened only when reached)."""
    for f in files:
        yield from adapter.read_file(f)


def open_source(
    spec: SourceSpec,
    *,
    base_dir: Path,
    limit: int | None = None,
    path_override: str | Path | None = None,
    allow_unlabelled: bool = False,
    batch_rows: int = 50_000,
) -> SourceStream:
    """Open one recipe source as a stream of `SourceBatch` (see the module docstring).

    `path_override` (the CLI's `--source NAME=PATH`, relative to the cwd) beats the recipe's `path`
    (relative to `base_dir`, the recipe's folder), which beats `hub`. `limit` keeps the first N raw
    rows and stops reading there. `allow_unlabelled` keeps rows without a gold answer (benchmark test
    splits read for decontamination). Files are located (and a missing one reported) here, before
    any row is read.
    """
    from curate.sources import get_adapter
    from curate.sources.files import load_hub, resolve_files

    if limit is not None and limit < 0:
        raise InputError(f"limit must be >= 0, got {limit}")
    if batch_rows < 1:
        raise InputError(f"batch_rows must be >= 1, got {batch_rows}")
    cls = get_adapter(spec.format)
    files = cls.locate(spec, Path(base_dir), path_override)
    if files is None:
        files = resolve_files(spec, Path(base_dir), path_override, cls.folder_glob)
    split = spec.split
    if files is not None:
        ctx = ReadContext(spec=spec, files=files, split=split, allow_unlabelled=allow_unlabelled)
        adapter = cls(ctx)
        raws: Iterator[RawRow] = file_rows(adapter, files)
        info: dict[str, Any] = {"name": spec.name, "format": spec.format, "uri": str(files[0]),
                                "sha256": None, "revision": None}
        if len(files) > 1:
            from curate.sources import _common_root

            root = _common_root(files)
            info["uri"] = str(root)
            info["files"] = [str(f.relative_to(root)) for f in files]
    else:
        ds = load_hub(spec, limit)
        ctx = ReadContext(spec=spec, files=[], split=split, from_hub=True, allow_unlabelled=allow_unlabelled)
        adapter = cls(ctx)
        raws = iter(adapter.read_hub(ds))
        repo, rev = spec.hub_repo  # type: ignore[misc]
        # The revision pins the repo; `datasets`' fingerprint of the loaded split pins its content.
        fingerprint = getattr(ds, "_fingerprint", None) or ""
        ident = f"{repo}@{rev or ''}:{spec.config or ''}:{split}:{fingerprint}"
        info = {
            "name": spec.name, "format": spec.format, "uri": f"hf://datasets/{repo}",
            "sha256": hashlib.sha256(ident.encode()).hexdigest(), "revision": rev,
            "config": spec.config, "fingerprint": fingerprint or None,
        }
    return SourceStream(spec, adapter, files, raws, info, limit=limit, batch_rows=batch_rows)
