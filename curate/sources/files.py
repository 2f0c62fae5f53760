"""Locating and reading source files (JSON lines / JSON / CSV / parquet) and Hub datasets.

Line formats (JSON lines, CSV) turn a bad row into a reject (`malformed_json`, `malformed_csv`,
`invalid_utf8`) and go on; whole-file formats (a JSON document, parquet) cannot, so a broken file
raises `InputError` naming the file, the line or byte, and a fix.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import re
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from curate.errors import InputError, SourceUnavailable
from curate.fsutil import sha256_file
from curate.recipe import SourceSpec
from curate.sources.base import RawRow
from curate.sources.readers import (
    iter_csv_file,
    iter_json_document,
    iter_json_lines_file,
    iter_parquet_file,
    json_line_rows,
    sniff_json,
)

_BOM = b"\xef\xbb\xbf"
_GLOB = re.compile(r"[*?\[]")


# --- where the source is -------------------------------------------------------------------------

def _hint_paths(spec: SourceSpec, base_dir: Path) -> str:
    return (
        f"a recipe `path:` is relative to the recipe's folder ({base_dir}); "
        f"`curate build RECIPE --source {spec.name}=PATH` takes a path relative to the current directory"
    )


def resolve_files(
    spec: SourceSpec, base_dir: Path, path_override: str | Path | None, folder_glob: str | tuple[str, ...]
) -> list[Path] | None:
    """The local files of a source, sorted; None when the source is to be read from the Hub."""
    if path_override is not None:
        p = Path(path_override).expanduser()
        p = p if p.is_absolute() else Path.cwd() / p
        origin = f"--source {spec.name}={path_override}"
    elif spec.path:
        p = Path(spec.path).expanduser()
        p = p if p.is_absolute() else base_dir / p
        origin = f"the recipe's path {spec.path!r}"
    else:
        return None
    if _GLOB.search(str(p)):
        files = sorted(Path(f) for f in glob.glob(str(p), recursive=True) if Path(f).is_file())
        if not files:
            raise SourceUnavailable(
                f"source {spec.name!r}: no file matches {p} (from {origin})", hint=_hint_paths(spec, base_dir)
            )
        return [f.resolve() for f in files]
    if p.is_dir():
        patterns = (folder_glob,) if isinstance(folder_glob, str) else folder_glob
        files = sorted({f for pat in patterns for f in p.glob(pat) if f.is_file()})
        if not files:
            wanted = " / ".join(patterns)
            raise InputError(
                f"source {spec.name!r}: the folder has no {wanted} files",
                file=str(p), hint=f"point `{spec.name}` at a data file, or at a folder of {wanted} files",
            )
        return [f.resolve() for f in files]
    if p.is_file():
        return [p.resolve()]
    raise SourceUnavailable(
        f"source {spec.name!r}: file not found: {p} (from {origin})", hint=_hint_paths(spec, base_dir)
    )


def files_sha256(files: list[Path]) -> str:
    """sha256 of the file bytes (one file), or of the names and hashes of several files."""
    digests = [sha256_file(f) for f in files]
    if len(files) == 1:
        return digests[0]
    listing = "".join(f"{f.name}\t{d}\n" for f, d in zip(files, digests, strict=True))
    return hashlib.sha256(listing.encode()).hexdigest()


# --- whole-file helpers --------------------------------------------------------------------------

def read_nonempty(path: Path) -> bytes:
    """The file's bytes; `InputError` when it holds nothing but whitespace."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(f"cannot read the file: {err.strerror}", file=str(path)) from None
    if not data.removeprefix(_BOM).strip():
        raise InputError(
            "file is empty", file=str(path),
            hint="check that the download or export finished, and that the source points at the right file",
        )
    return data


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def decode_whole(path: Path, data: bytes) -> str:
    """UTF-8 text of a whole-file format; `InputError` naming the byte and line when it is not UTF-8."""
    try:
        return data.removeprefix(_BOM).decode("utf-8")
    except UnicodeDecodeError as err:
        offset = err.start + (len(_BOM) if data.startswith(_BOM) else 0)
        line = _line_of(data, offset)
        raise InputError(
            f"not valid UTF-8: byte 0x{data[offset]:02x} at byte offset {offset} (line {line})",
            file=str(path), row=line,
            hint="re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 IN > OUT`)",
        ) from None


def load_json(path: Path, data: bytes | None = None, **kwargs: Any) -> Any:
    """Parse a whole JSON document; `InputError` with line and column when it is not valid JSON."""
    data = read_nonempty(path) if data is None else data
    text = decode_whole(path, data)
    try:
        return json.loads(text, **kwargs)
    except json.JSONDecodeError as err:
        raise InputError(
            f"not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})",
            file=str(path), row=err.lineno,
            hint="fix the JSON at that position; for one record per line, use JSON lines (.jsonl)",
        ) from None


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray)):
        return f"<{len(obj)} bytes>"  # e.g. an embedded image: don't copy it into the rejects file
    return str(obj)


def dump(obj: Any) -> str:
    """Raw text of a parsed row for the rejects file."""
    return json.dumps(obj, ensure_ascii=False, default=_jsonable)


# --- JSON lines, JSON documents, CSV, parquet: incremental readers in `curate.sources.readers` ------

def iter_json_lines(path: Path, data: bytes) -> Iterator[RawRow]:
    """One raw row per non-blank line of `data` (bytes already read); bad lines carry a `Reject`."""
    return json_line_rows(path, iter(io.BytesIO(data)))


def iter_json_records(path: Path, data: bytes | None = None, *, record_keys: tuple[str, ...] = ("data",)) -> Iterator[RawRow]:
    """Records of a JSON lines file, a JSON array, or a JSON object holding an array under `data`.

    Read incrementally (one element at a time, `curate.sources.jsonstream`): a multi-GB array is read
    in bounded memory and `limit` stops the read early. `data` (bytes already read) is parsed the same way.
    """
    if data is not None:
        if path.suffix.lower() in (".jsonl", ".ndjson") or _is_json_lines(data):
            return iter_json_lines_file(path, io.BufferedReader(io.BytesIO(data)))  # type: ignore[arg-type]
        return iter_json_document(path, record_keys, io.BufferedReader(io.BytesIO(data)))  # type: ignore[arg-type]
    kind = sniff_json(path)
    if kind == "empty":
        raise InputError("file is empty", file=str(path),
                         hint="check that the download or export finished, and that the source points at the right file")
    if path.suffix.lower() in (".jsonl", ".ndjson") or kind == "lines":
        return iter_json_lines_file(path)
    return iter_json_document(path, record_keys)


def _is_json_lines(data: bytes) -> bool:
    """True when the first non-blank line is a JSON object on its own and more lines follow."""
    body = data.removeprefix(_BOM).lstrip()
    if not body.startswith(b"{"):
        return False
    first, _, rest = body.partition(b"\n")
    if not rest.strip():
        return False
    try:
        return isinstance(json.loads(first), dict)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def iter_csv(path: Path, *, header: bool, width: int | None = None) -> Iterator[RawRow]:
    """Rows of a CSV (or .tsv) file, read line by line: see `curate.sources.readers.iter_csv_file`."""
    return iter_csv_file(path, header=header, width=width)


def iter_parquet(path: Path) -> Iterator[RawRow]:
    """One raw row per parquet row, read batch by batch."""
    return iter_parquet_file(path)


def read_records(path: Path) -> Iterator[RawRow]:
    """Raw rows of a local file by extension: .parquet, .csv/.tsv (with header), else JSON."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return iter_parquet(path)
    if suffix in (".csv", ".tsv"):
        return iter_csv(path, header=True)
    return iter_json_records(path)


def columns_of(path: Path) -> list[str] | None:
    """Column names of a schema-ful file (parquet, CSV with header), None for JSON."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            return list(pl.read_parquet_schema(path))
        except Exception:  # noqa: BLE001 - reported when the rows are read
            return None
    if suffix in (".csv", ".tsv"):
        for row in iter_csv(path, header=False):
            if row.obj:
                return [c.strip() for c in row.obj]
    return None


# --- Hugging Face Hub ----------------------------------------------------------------------------

def hub_unreachable(timeout_s: float = 3.0) -> str | None:
    """Why the Hub endpoint cannot be reached (DNS or TCP), or None.

    Checked before `load_dataset`, whose retries take ~25 s to give up with no network. Skipped when
    HF_HUB_OFFLINE is set: `datasets` then reads its local cache and fails at once by itself.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return None
    from huggingface_hub import constants

    url = urllib.parse.urlsplit(constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as err:
        return f"the Hub endpoint {url.scheme}://{host}:{port} is unreachable ({err.strerror or err})"
    return None


def load_hub(spec: SourceSpec, limit: int | None = None) -> Any:
    """`datasets.load_dataset(repo, config, revision=rev, split=split)`, limited to `limit` rows.

    With no network and nothing cached this raises `SourceUnavailable` saying how to use a local file.
    Image columns are cast to undecoded `{path, bytes}` so no image library is needed.
    """
    assert spec.hub_repo is not None
    repo, rev = spec.hub_repo
    hint = (f"no network, or not in the local cache? Download the data and point the source at it: "
            f"`curate build RECIPE --source {spec.name}=PATH`, or set `path:` for source {spec.name!r} in "
            "the recipe (with the dataset already in your Hugging Face cache, set HF_HUB_OFFLINE=1)")
    where = f"Hub dataset {spec.hub}{f' (config {spec.config})' if spec.config else ''}, split {spec.split!r}"
    unreachable = hub_unreachable()
    if unreachable:
        raise SourceUnavailable(f"source {spec.name!r}: cannot load {where}: {unreachable}", hint=hint)
    try:
        import datasets

        ds = datasets.load_dataset(repo, spec.config, revision=rev, split=spec.split)
    except Exception as err:  # noqa: BLE001 - offline, missing, gated: all mean "not available here"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise SourceUnavailable(
            f"source {spec.name!r}: could not load {where}: "
            f"{type(err).__name__}{': ' + reason[:300] if reason else ''}",
            hint=hint,
        ) from None
    for name, feature in ds.features.items():
        if type(feature).__name__ == "Image":
            ds = ds.cast_column(name, datasets.Image(decode=False))
    if limit is not None and limit < len(ds):
        ds = ds.select(range(limit))
    return ds


def hub_rows(ds: Any, spec: SourceSpec, batch_size: int = 1000) -> Iterator[RawRow]:
    """One raw row per Hub dataset row (read in batches: much faster than row indexing)."""
    i = 0
    for batch in ds.iter(batch_size=batch_size):
        keys = list(batch)
        n = len(batch[keys[0]]) if keys else 0
        for j in range(n):
            i += 1
            row = {k: batch[k][j] for k in keys}
            yield RawRow(obj=row, where=f"{spec.hub} {spec.split} row {i}")
