"""Incremental readers of local source files: JSON lines, JSON documents, CSV, parquet.

Every reader opens its file with `open_read`, which hashes the bytes as they are read and records
the digest in the current `ReadLog` (set by the streaming driver, `curate.sources.stream`): the
source's sha256 is of the bytes the rows were parsed from, even when the file grows during a build
(issue 10). Memory per reader is one read buffer (1 MiB) plus the row being parsed; no reader loads a
whole file, so `limit` stops the reading early.
"""

from __future__ import annotations

import contextvars
import csv
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.errors import InputError
from curate.sources.base import RawRow, Reject
from curate.sources.jsonstream import Item, JsonCursor, JsonSyntaxError, loads_row

BUFFER = 1 << 20
_BOM = b"\xef\xbb\xbf"
_SURROGATE = re.compile("[\udc80-\udcff]")


# --- hashing what is read -----------------------------------------------------------------------

@dataclass
class FileRead:
    """What was read of one file: sha256 and byte count of the bytes read, and whether it hit EOF."""

    path: Path
    hasher: Any = field(default_factory=hashlib.sha256)
    bytes: int = 0
    eof: bool = False

    @property
    def sha256(self) -> str:
        return self.hasher.hexdigest()


@dataclass
class ReadLog:
    """The files read during one source read, by resolved path (the longest read of each wins)."""

    files: dict[Path, FileRead] = field(default_factory=dict)

    def add(self, read: FileRead) -> None:
        old = self.files.get(read.path)
        if old is None or read.bytes >= old.bytes or not old.bytes:
            self.files[read.path] = read


CURRENT_LOG: contextvars.ContextVar[ReadLog | None] = contextvars.ContextVar("curate_read_log", default=None)


class _HashedRaw(io.RawIOBase):
    """A raw binary file that hashes every byte handed out."""

    def __init__(self, path: Path):
        self._fh = open(path, "rb")  # noqa: SIM115 - closed with the wrapper
        self.read_info = FileRead(path=path)
        log = CURRENT_LOG.get()
        self._log = log

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self._fh.readinto(b)
        if n:
            self.read_info.hasher.update(memoryview(b)[:n])
            self.read_info.bytes += n
            if self._log is not None and self.read_info.bytes == n:
                self._log.add(self.read_info)  # registered on the first bytes read
        else:
            self.read_info.eof = True
        return n or 0

    def close(self) -> None:
        self._fh.close()
        super().close()


def open_read(path: Path) -> io.BufferedReader:
    """Open a source file for reading; its bytes are hashed into the current `ReadLog` as read."""
    try:
        raw = _HashedRaw(Path(path).resolve())
    except OSError as err:
        raise InputError(f"cannot read the file: {err.strerror}", file=str(path)) from None
    return io.BufferedReader(raw, buffer_size=BUFFER)


def _empty(path: Path) -> InputError:
    return InputError("file is empty", file=str(path),
                      hint="check that the download or export finished, and that the source points at the right file")


# --- JSON lines ----------------------------------------------------------------------------------

def json_line_rows(path: Path, lines: Iterator[bytes]) -> Iterator[RawRow]:
    """One raw row per non-blank line; a bad line becomes a row carrying its `Reject`."""
    name = path.name
    for lineno, line in enumerate(lines, 1):
        if lineno == 1:
            line = line.removeprefix(_BOM)
        line = line.rstrip(b"\r\n")
        if not line.strip():
            continue  # blank lines are separators, not rows
        where = f"{name} line {lineno}"
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            yield RawRow(raw=line.decode("utf-8", "backslashreplace"), where=where, size=len(line),
                         error=Reject("invalid_utf8", f"line {lineno}: byte 0x{line[err.start]:02x} at column "
                                                      f"{err.start + 1} is not valid UTF-8"))
            continue
        obj, reason, detail = loads_row(text)
        if reason is not None:
            yield RawRow(raw=text, where=where, size=len(line), error=Reject(reason, f"line {lineno}: {detail}"))
            continue
        yield RawRow(raw=text, obj=obj, where=where, size=len(line))


def iter_json_lines_file(path: Path, fh: Any = None) -> Iterator[RawRow]:
    """JSON lines of a file (or of the open binary `fh`); `InputError` when it has no row at all."""
    with open_read(path) if fh is None else fh as fh:
        any_row = False
        for row in json_line_rows(path, fh):
            any_row = True
            yield row
        if not any_row:
            raise _empty(path)


# --- JSON documents ------------------------------------------------------------------------------

def sniff_json(path: Path) -> str:
    """'lines', 'array', 'object' or 'empty' from the file's first bytes (read without hashing).

    JSON lines: the first non-blank line is a JSON object on its own and more text follows. The first
    line is read up to 8 MiB: a longer first line is taken for a one-line document.
    """
    with open(path, "rb") as fh:
        head = b""
        while not head.strip():
            line = fh.readline(8 << 20)
            if not line:
                return "empty"
            head = line.removeprefix(_BOM) if not head else line
        body = head.lstrip()
        if body[:1] == b"[":
            return "array"
        if body[:1] != b"{":
            return "other"
        if not head.endswith(b"\n"):
            return "object"
        rest = fh.read(4096)
        while rest and not rest.strip():
            rest = fh.read(4096)
        if not rest:
            return "object"
    obj, reason, _ = loads_row(head.decode("utf-8", "replace"))
    return "lines" if reason is None and isinstance(obj, dict) else "object"


def item_row(path: Path, item: Item, where: str) -> RawRow:
    """A raw row from a document element: parsed, or carrying the element's reject."""
    if item.reason is not None:
        return RawRow(raw=item.raw, where=where, size=item.chars,
                      error=Reject(item.reason, f"line {item.line}: {item.detail}"))
    return RawRow(obj=item.obj, where=where, size=item.chars)


def syntax_error(path: Path, err: JsonSyntaxError) -> InputError:
    return InputError(f"not valid JSON: {err.message} (line {err.line})", file=str(path), row=err.line,
                      hint="fix the JSON at that position; for one record per line, use JSON lines (.jsonl)")


def iter_json_document(path: Path, record_keys: tuple[str, ...] = ("data",), fh: Any = None) -> Iterator[RawRow]:
    """Records of a JSON array, or of the array under one of `record_keys` of a JSON object."""
    with open_read(path) if fh is None else fh as fh:
        try:
            cur = JsonCursor(fh)
            first = cur.peek()
            if not first:
                raise _empty(path)
            if first == "[":
                for i, item in enumerate(cur.elements(), 1):
                    yield item_row(path, item, f"{path.name} record {i}")
            elif first == "{":
                keys: list[str] = []
                found = False
                for key in cur.members():
                    keys.append(key)
                    if key in record_keys and not found and cur.peek() == "[":
                        found = True
                        for i, item in enumerate(cur.elements(), 1):
                            yield item_row(path, item, f"{path.name} {key} record {i}")
                    else:
                        cur.item()
                if not found:
                    raise InputError(
                        "expected JSON lines, a JSON array of records, or an object with a "
                        f"{' / '.join(repr(k) for k in record_keys)} array; got an object with keys "
                        f"{', '.join(keys[:8])}", file=str(path),
                        hint="check the source's `format:` (pubmedqa and headqa files have their own formats)",
                    )
            else:
                raise cur.error(f"expected a JSON array or object, found {first!r}")
            if not cur.at_end():
                raise cur.error("extra data after the JSON document")
        except JsonSyntaxError as err:
            raise syntax_error(path, err) from None


# --- CSV -----------------------------------------------------------------------------------------

class _Lines:
    """Decoded lines fed to `csv.reader`, with line numbers and push-back (to re-read after a bad quote)."""

    def __init__(self, fh: Any):
        self.fh = fh
        self.lineno = 0  # number of the last line handed out
        self.pending: list[tuple[int, str]] = []  # lines pushed back, next first
        self.taken: list[tuple[int, str]] = []  # lines handed out for the current record
        self.first = True

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.pending:
            self.lineno, text = self.pending.pop()
        else:
            data = self.fh.readline()
            if not data:
                raise StopIteration
            if self.first:
                data, self.first = data.removeprefix(_BOM), False
            self.lineno += 1
            text = data.decode("utf-8", "surrogateescape")
        self.taken.append((self.lineno, text))
        return text

    def push_back(self, lines: list[tuple[int, str]]) -> None:
        self.pending.extend(reversed(lines))


def _csv_raw(rec: list[str], delimiter: str) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="").writerow(rec)
    return out.getvalue()


def _unescape(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def iter_csv_file(path: Path, *, header: bool, width: int | None = None) -> Iterator[RawRow]:
    """Rows of a CSV (or .tsv) file: a dict per row with `header`, else a list of fields.

    The expected field count is the header's (or `width`, or the first row's when headerless). A
    record with another count that spans several lines began with an unbalanced quote: only its
    first line is rejected (`malformed_csv`, naming that line) and the lines after it are read again
    as rows, so no row is swallowed. Rows with bytes that are not UTF-8 are `invalid_utf8`.
    """
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open_read(path) as fh:
        lines = _Lines(fh)
        columns: list[str] | None = None
        expected = width
        any_row = False
        while True:
            lines.taken = []
            reader = csv.reader(lines, delimiter=delimiter)
            try:
                rec = next(reader, None)
                error = None
            except csv.Error as err:
                rec, error = None, str(err)
            taken = lines.taken
            if rec is None and error is None:
                break
            if rec is not None and (not rec or (len(rec) == 1 and not rec[0].strip())):
                continue
            any_row = True
            start = taken[0][0] if taken else lines.lineno
            count_ok = expected is None or (rec is not None and len(rec) == expected)
            if (error or not count_ok) and len(taken) > 1:
                # an unbalanced quote swallowed the lines after it: reject its line, re-read the rest
                lines.push_back(taken[1:])
                yield RawRow(raw=taken[0][1].rstrip("\r\n"), where=f"{path.name} line {start}",
                             size=len(taken[0][1]),
                             error=Reject("malformed_csv", f"line {start}: unbalanced quote (a field opens a quote "
                                                           "that does not close on this line)"))
                continue
            raw = taken[0][1].rstrip("\r\n") if len(taken) == 1 else "".join(t for _, t in taken).rstrip("\r\n")
            where = f"{path.name} line {start}"
            if error:
                yield RawRow(raw=_unescape(raw), where=where, size=len(raw),
                             error=Reject("malformed_csv", f"line {start}: {error}"))
                continue
            assert rec is not None
            if header and columns is None:
                columns = [c.strip() for c in rec]
                dup = sorted({c for c in columns if columns.count(c) > 1})
                if dup:
                    raise InputError(f"repeated column names in the header: {dup}", file=str(path), row=start)
                expected = len(columns)
                continue
            if expected is None:
                expected = len(rec)
            bad = next((f for f in rec if _SURROGATE.search(f)), None)
            if bad is not None:
                col = _SURROGATE.search(bad).start() + 1  # type: ignore[union-attr]
                yield RawRow(raw=_unescape(_csv_raw(rec, delimiter)), where=where, size=len(raw),
                             error=Reject("invalid_utf8", f"line {start}: a field holds bytes that are not "
                                                          f"valid UTF-8 (at character {col} of the field)"))
                continue
            if len(rec) != expected:
                yield RawRow(raw=_csv_raw(rec, delimiter), where=where, size=len(raw), error=Reject(
                    "malformed_csv", f"line {start}: expected {expected} fields, got {len(rec)}"))
                continue
            obj = dict(zip(columns, rec, strict=True)) if columns is not None else rec
            yield RawRow(raw=_csv_raw(rec, delimiter), obj=obj, where=where, size=len(raw))
        if not any_row:
            raise _empty(path)


# --- parquet -------------------------------------------------------------------------------------

def iter_parquet_file(path: Path, batch_rows: int = 10_000) -> Iterator[RawRow]:
    """One raw row per parquet row, read a record batch at a time (pyarrow), never the whole file.

    Parquet is read by seeking (footer first), so its bytes are hashed in one sequential pass through
    `open_read` first; a file whose size changed between that pass and the read is an error.
    """
    import polars as pl
    import pyarrow.parquet as pq

    with open_read(path) as fh:
        hashed, blank = 0, True
        while chunk := fh.read(BUFFER):
            hashed += len(chunk)
            blank = blank and not chunk.removeprefix(_BOM).strip()
    if blank:
        raise _empty(path)
    try:
        pf = pq.ParquetFile(path)
    except Exception as err:  # noqa: BLE001 - pyarrow raises several error types for bad files
        raise InputError(f"not a readable parquet file: {err}", file=str(path),
                         hint="check the file is complete and really parquet") from None
    with pf:
        if path.stat().st_size != hashed:
            raise InputError("the file changed while it was read", file=str(path),
                             hint="build again once the file is complete")
        if pf.metadata.num_rows == 0:
            raise InputError("file is empty (no rows)", file=str(path),
                             hint="check that the export finished, and that the source points at the right file")
        i = 0
        for batch in pf.iter_batches(batch_size=batch_rows):
            for row in pl.from_arrow(batch).iter_rows(named=True):  # type: ignore[union-attr]
                i += 1
                yield RawRow(obj=row, where=f"{path.name} row {i}")
