"""The source-adapter contract: raw rows in, canonical records or reasoned rejects out.

An adapter is a class with a `name` (the recipe's `format:`), registered with `@register_adapter`.
It reads raw rows (from files or from a loaded Hub dataset) and converts each parsed row into a
canonical record dict, raising `Reject(reason, detail)` when the row cannot become a record. The
driver in `curate.sources` numbers the rows, applies `limit`, checks duplicate source ids and builds
the frames, so an adapter only knows its own layout.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import polars as pl

from curate.recipe import SourceSpec

LETTERS = string.ascii_uppercase

#: Columns of `SourceData.rejected`.
REJECT_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.Utf8,
    "source_row": pl.Int64,
    "raw": pl.Utf8,
    "reason": pl.Utf8,
    "detail": pl.Utf8,
}


class Reject(Exception):
    """A raw row that cannot become a record: `reason` is a snake_case code, `detail` says why."""

    def __init__(self, reason: str, detail: str = "", *, field: str | None = None):
        self.reason, self.detail, self.field = reason, detail, field
        super().__init__(f"{reason}: {detail}")


def missing(name: str) -> Reject:
    return Reject("missing_field", f"required field '{name}' is missing or null", field=name)


@dataclass
class RawRow:
    """One raw row as read: its text (for the rejects file), the parsed value, where it was.

    `raw` may be left None for rows parsed from a whole document (JSON array, parquet, Hub): the
    text is then serialised from `obj` only if the row is rejected.
    """

    raw: str | None = None
    obj: Any = None
    where: str = ""  # human location, e.g. "test.jsonl line 12"
    error: Reject | None = None  # set when the row could not even be parsed
    #: Size of the row as read, for `max_row_bytes`: UTF-8 bytes for line formats (JSON lines, CSV),
    #: characters for elements of a JSON document; None when unknown (parquet, Hub).
    size: int | None = None

    def text(self) -> str:
        if self.raw is None:
            from curate.sources.files import dump

            self.raw = dump(self.obj)
        return self.raw


@dataclass
class SourceData:
    """What `read_source` returns.

    frame:    canonical records (curate.record.SCHEMA, plus adapter extras such as HEAD-QA's `image`)
    rejected: raw rows that could not become records: source, source_row (1-based), raw, reason, detail
    info:     name, format, uri, sha256, rows (raw rows read), revision, license (+ split, config, files)
    """

    frame: pl.DataFrame
    rejected: pl.DataFrame
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReadContext:
    """What an adapter may know about the read in progress."""

    spec: SourceSpec
    files: list[Path]  # empty when reading from the Hub
    split: str
    from_hub: bool = False
    #: Keep rows without a gold answer (answer null) instead of rejecting them as `unlabelled`:
    #: benchmark test splits read for decontamination.
    allow_unlabelled: bool = False


class Adapter:
    """Base class. Subclasses set `name` and implement `convert`; readers default to JSON records.

    `folder_glob` is used when the source path is a folder. `extra_columns` are non-canonical columns
    the adapter adds (name -> dtype), taken from the record dicts `convert` returns.
    One instance serves one `read_source` call, so an adapter may keep per-read state.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    folder_glob: ClassVar[str | tuple[str, ...]] = ("*.json", "*.jsonl")
    extra_columns: ClassVar[dict[str, pl.DataType]] = {}

    def __init__(self, ctx: ReadContext):
        self.ctx = ctx

    @classmethod
    def locate(cls, spec: Any, base_dir: Path, path_override: str | Path | None) -> list[Path] | None:
        """Files for a source location the generic path rules do not understand (e.g. a registry ref).

        None means "use the usual rules" (path override, recipe path, then Hub).
        """
        return None

    def read_file(self, path: Path) -> Iterator[RawRow]:
        """Raw rows of one local file (default: JSON lines / array / parquet / CSV by extension)."""
        from curate.sources.files import read_records

        return read_records(path)

    def read_hub(self, dataset: Any) -> Iterator[RawRow]:
        """Raw rows of a loaded `datasets.Dataset` (default: one dict per row)."""
        from curate.sources.files import hub_rows

        return hub_rows(dataset, self.ctx.spec)

    def convert(self, obj: Any) -> dict[str, Any]:  # pragma: no cover - abstract
        """Map one parsed raw row to a canonical record dict; raise `Reject` if it cannot be one."""
        raise NotImplementedError

    def finish(self) -> None:
        """Called after the last row: raise `InputError` for whole-source problems seen along the way."""


_REGISTRY: dict[str, type[Adapter]] = {}


def register_adapter(cls: type[Adapter]) -> type[Adapter]:
    """Class decorator: make an adapter available to recipes as `format: <cls.name>`."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"source format {cls.name!r} registered twice ({_REGISTRY[cls.name]} and {cls})")
    _REGISTRY[cls.name] = cls
    return cls


# --- helpers for adapters ------------------------------------------------------------------------

_WS = re.compile(r"\s+")


def canon(text: Any) -> str:
    """Comparison key: NFC, whitespace collapsed, case-folded."""
    if text is None:
        return ""
    return _WS.sub(" ", unicodedata.normalize("NFC", str(text))).strip().casefold()


def get_path(obj: Mapping[str, Any], path: str) -> Any:
    """`obj[path]`, or a dotted path into nested mappings (`context.contexts`). Raises KeyError."""
    if path in obj:
        return obj[path]
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            raise KeyError(path)
        cur = cur[part]
    return cur


def require(obj: Mapping[str, Any], name: str) -> Any:
    """A required field: `Reject(missing_field)` when absent or null."""
    try:
        value = get_path(obj, name)
    except KeyError:
        raise missing(name) from None
    if value is None:
        raise missing(name)
    return value


def text_of(value: Any) -> str | None:
    """A field as text: lists are joined with newlines, blank strings become None."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = "\n".join(str(v) for v in value if v is not None)
    value = str(value)
    return value if value.strip() else None


def as_int(value: Any, name: str) -> int:
    """An integer field (ints, or strings of digits); `Reject(malformed_row)` otherwise."""
    if isinstance(value, bool):
        raise Reject("malformed_row", f"field '{name}' must be an integer, got {value!r}", field=name)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise Reject("malformed_row", f"field '{name}' must be an integer, got {value!r}", field=name)


def options_from(pairs: Iterable[tuple[Any, Any]]) -> list[dict[str, str]]:
    """Canonical options from (label, text) pairs; labels are stripped strings.

    Called once per row: strings (the usual case) skip the `str()` call.
    """
    return [{"label": (k if type(k) is str else str(k)).strip(),
             "text": v if type(v) is str else ("" if v is None else str(v))} for k, v in pairs]


def lettered(texts: Iterable[Any]) -> list[dict[str, str]]:
    """Options labelled A, B, C, ... in order."""
    texts = list(texts)
    if len(texts) > len(LETTERS):
        raise Reject("malformed_row", f"{len(texts)} options; at most {len(LETTERS)} are supported")
    return options_from(zip(LETTERS, texts, strict=False))


def match_label(answer: Any, options: list[dict[str, str]], what: str = "answer") -> str:
    """The option label equal to `answer` (trimmed, case-insensitive), else `answer_not_in_options`."""
    key = str(answer).strip()
    for o in options:
        if o["label"] == key:
            return o["label"]
    for o in options:
        if o["label"].casefold() == key.casefold():
            return o["label"]
    labels = ", ".join(o["label"] for o in options) or "none"
    raise Reject("answer_not_in_options", f"{what} {answer!r} is not an option label (labels: {labels})")


def match_text(answer: Any, options: list[dict[str, str]], what: str = "answer") -> str:
    """The label of the option whose text equals `answer` (normalised), else `answer_not_in_options`."""
    key = canon(answer)
    hits = [o["label"] for o in options if canon(o["text"]) == key]
    if not hits:
        raise Reject("answer_not_in_options", f"{what} text {str(answer)[:120]!r} matches no option text")
    if len(hits) > 1:
        raise Reject("ambiguous_answer", f"{what} text {str(answer)[:120]!r} matches options {', '.join(hits)}")
    return hits[0]


def match_index(answer: Any, options: list[dict[str, str]], base: int, what: str = "answer") -> str:
    """The label of option number `answer` counted from `base` (0 or 1), else `answer_not_in_options`."""
    idx = as_int(answer, what) - base
    if not 0 <= idx < len(options):
        span = f"{base}..{base + len(options) - 1}"
        raise Reject("answer_not_in_options", f"{what} index {answer!r} is outside {span} ({len(options)} options)")
    return options[idx]["label"]
