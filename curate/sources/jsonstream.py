"""A streaming JSON reader: arrays element by element and objects key by key, in bounded memory.

Why not `ijson`: measured here, `ijson.items` (yajl2_c backend) builds a prefix string per nesting
level, so 100,000 nested `[` took more than 20 GB before the process was killed, and one `NaN` or a
bad element is a parse error for the whole stream (nothing after it can be read). This cursor keeps a
text buffer over the file and parses each element with the C scanner of the standard library
(`json.JSONDecoder.raw_decode`), so:

- memory is the largest single element plus one read chunk (1 MiB), whatever the file size;
- a bad element (syntax, `NaN`/`Infinity`, a number that overflows to infinity, nesting deeper than
  Python's recursion limit, a lone surrogate escape) becomes one `Item` with a reason; the cursor
  skips to the element's end with an iterative bracket scanner and reads on;
- an element cut by the chunk boundary is re-read with a doubled chunk (amortised linear).

Usage: `cur.elements()` iterates the array at the cursor; `cur.members()` yields each key of the
object at the cursor with the cursor on its value, and the caller then takes the value with
`cur.item()` or descends with `cur.elements()` / `cur.members()` (HEAD-QA's `exams`).
"""

from __future__ import annotations

import codecs
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

CHUNK = 1 << 20
_WS = re.compile(r"[ \t\n\r]*")
# A string (maybe cut at the buffer end), or a structural character, for skipping bad elements.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*(")?|[\[\]{},]', re.DOTALL)
# \uD800-\uDFFF escapes: only then is the (costlier) lone-surrogate check run.
_SURROGATE_ESC = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
#: Raw text kept for a rejected element (the rest is elided): a reject row should not hold megabytes.
RAW_KEEP = 4000


class BadNumber(ValueError):
    """`NaN`, `Infinity` or a number too large for a float: not JSON (RFC 8259), never the text "nan"."""


def _constant(name: str) -> Any:
    raise BadNumber(f"{name} is not a valid JSON number")


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise BadNumber(f"number {text[:40]} overflows a 64-bit float")
    return value


#: One decoder for line formats and documents: NaN/Infinity/overflow raise `BadNumber`.
DECODER = json.JSONDecoder(parse_constant=_constant, parse_float=_float)


def lone_surrogate(obj: Any) -> bool:
    """True when a parsed value holds a lone UTF-16 surrogate (from a `\\udXXX` escape)."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except (RecursionError, ValueError, TypeError):
        return False
    return False


def loads_row(text: str) -> tuple[Any, str | None, str | None]:
    """Parse one row's JSON text: (obj, None, None) or (None, reason, detail) with a reject reason."""
    try:
        obj = DECODER.decode(text)
    except BadNumber as err:
        return None, "invalid_number", str(err)
    except json.JSONDecodeError as err:
        return None, "malformed_json", f"{err.msg} at column {err.colno}"
    except RecursionError:
        return None, "malformed_json", "nested too deeply (beyond Python's recursion limit)"
    if _SURROGATE_ESC.search(text) and lone_surrogate(obj):
        return None, "invalid_utf8", "a \\u escape encodes a lone UTF-16 surrogate, which is not text"
    return obj, None, None


@dataclass
class Item:
    """One element read: `obj`, or a `reason` + `detail` (and the element's `raw` text) when it is bad.

    `chars` is the element's length in characters (a lower bound of its UTF-8 bytes).
    """

    obj: Any = None
    reason: str | None = None
    detail: str = ""
    raw: str | None = None
    line: int = 0
    chars: int = 0


class JsonSyntaxError(Exception):
    """The document's structure is broken (not one bad element): the read cannot go on."""

    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.message, self.line = message, line


class JsonCursor:
    """A position in a JSON document read incrementally from a binary file."""

    def __init__(self, fh: IO[bytes], chunk: int = CHUNK):
        self.fh, self.chunk = fh, chunk
        self.dec = codecs.getincrementaldecoder("utf-8")("strict")
        self.buf, self.pos, self.eof = "", 0, False
        self.lines_before = 0  # newlines in text already dropped from the buffer
        self.dropped = 0  # characters already dropped from the buffer
        self.bytes_read = 0
        self._first = True
        self._fill(chunk)

    # --- buffer ----------------------------------------------------------------------------------

    def _fill(self, n: int) -> bool:
        """Append up to `n` more bytes of text; False at end of file."""
        if self.eof:
            return False
        data = self.fh.read(n)
        start = self.bytes_read
        self.bytes_read += len(data)
        try:
            text = self.dec.decode(data, final=not data)
        except UnicodeDecodeError as err:
            # err.object = bytes the decoder held back from the last read (an unfinished character) + data:
            # at end of file `data` is empty and the bad byte is one of those held back
            held = len(err.object) - len(data)
            raise JsonSyntaxError(
                f"not valid UTF-8: byte 0x{err.object[err.start]:02x} at byte offset {start - held + err.start}",
                self.line_at(len(self.buf)) + text_lines(err.object[: err.start]),
            ) from None
        if self._first:
            text, self._first = text.removeprefix("\ufeff"), False
        if not data:
            self.eof = True
        if self.pos:
            self.lines_before += self.buf.count("\n", 0, self.pos)
            self.dropped += self.pos
            self.buf = self.buf[self.pos:] + text
            self.pos = 0
        else:
            self.buf += text
        return bool(data)

    def line_at(self, pos: int) -> int:
        return self.lines_before + self.buf.count("\n", 0, pos) + 1

    def error(self, message: str) -> JsonSyntaxError:
        return JsonSyntaxError(message, self.line_at(self.pos))

    def peek(self) -> str:
        """The next non-blank character ('' at end of file); the cursor moves onto it."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill(self.chunk):
                return ""

    def expect(self, char: str, what: str) -> None:
        got = self.peek()
        if got != char:
            raise self.error(f"expected {what}, found {repr(got) if got else 'the end of the file'}")
        self.pos += 1

    # --- values ----------------------------------------------------------------------------------

    def _value(self) -> tuple[Any, int]:
        """Parse the value at the cursor (reading more text when it is cut): (obj, end position)."""
        want = self.chunk
        while True:
            try:
                obj, end = DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as err:
                cut = err.pos >= len(self.buf) - 16 or err.msg.startswith("Unterminated string")
                if cut and self._fill(want):
                    want *= 2
                    continue
                raise
            if end >= len(self.buf) and self._fill(want):  # a number may go on in the next chunk
                want *= 2
                continue
            return obj, end

    def item(self) -> Item:
        """The value at the cursor as an `Item` (a bad value is skipped and described, not raised)."""
        if not self.peek():
            raise self.error("unexpected end of the file (the document is incomplete)")
        start = self.pos
        try:
            obj, end = self._value()
        except BadNumber as err:
            return self._bad("invalid_number", str(err))
        except RecursionError:
            return self._bad("malformed_json", "nested too deeply (beyond Python's recursion limit)")
        except json.JSONDecodeError as err:
            return self._bad("malformed_json", err.msg, self.line_at(err.pos))
        start = self.pos  # the buffer may have been compacted while reading
        self.pos = end
        if _SURROGATE_ESC.search(self.buf, start, end) and lone_surrogate(obj):
            return Item(reason="invalid_utf8", detail="a \\u escape encodes a lone UTF-16 surrogate, which is not text",
                        raw=_clip(self.buf[start:end]), line=self.line_at(start), chars=end - start)
        return Item(obj=obj, chars=end - start)

    def _bad(self, reason: str, detail: str, line: int | None = None) -> Item:
        """An Item for the bad value at the cursor, which is skipped (only its head is kept as raw)."""
        line, start = line or self.line_at(self.pos), self.dropped + self.pos
        head = self.buf[self.pos:self.pos + RAW_KEEP + 1]
        self._skip()
        chars = self.dropped + self.pos - start
        raw = head[:chars].rstrip() if chars <= RAW_KEEP else f"{head[:RAW_KEEP]}… [{chars - RAW_KEEP} more characters]"
        return Item(reason=reason, detail=detail, raw=raw, line=line, chars=chars)

    def _skip(self) -> None:
        """Move past the value at the cursor: to the next `,` `]` `}` at its own level (iteratively)."""
        depth, scan = 0, self.pos
        while True:
            resume = len(self.buf)
            for m in _TOKEN.finditer(self.buf, scan):
                tok = m.group()
                if tok[0] == '"':
                    if m.group(1) is None and not self.eof:
                        resume = m.start()  # a string cut by the buffer end: read more, rescan it
                        break
                    continue
                if tok in "[{":
                    depth += 1
                elif tok in "]}" and depth:
                    depth -= 1
                elif depth == 0:  # `,` or the enclosing `]` / `}`
                    self.pos = m.start()
                    return
            self.pos = resume  # text before `resume` is scanned: the buffer may drop it
            if not self._fill(self.chunk):
                self.pos = len(self.buf)
                return
            scan = self.pos

    # --- containers ------------------------------------------------------------------------------

    def elements(self) -> Iterator[Item]:
        """Each element of the array at the cursor."""
        self.expect("[", "'[' (a JSON array)")
        if self.peek() == "]":
            self.pos += 1
            return
        while True:
            yield self.item()
            c = self.peek()
            self.pos += 1
            if c == "]":
                return
            if c != ",":
                self.pos -= 1
                raise self.error(f"expected ',' or ']' after an array element, found {repr(c) if c else 'the end'}")

    def members(self) -> Iterator[str]:
        """Each key of the object at the cursor; the caller must then read or descend into its value."""
        self.expect("{", "'{' (a JSON object)")
        if self.peek() == "}":
            self.pos += 1
            return
        while True:
            if self.peek() != '"':
                raise self.error("expected a quoted key")
            key = self.item()
            if not isinstance(key.obj, str):
                raise self.error(f"bad object key: {key.detail}")
            self.expect(":", "':' after a key")
            yield key.obj
            c = self.peek()
            self.pos += 1
            if c == "}":
                return
            if c != ",":
                self.pos -= 1
                raise self.error(f"expected ',' or '}}' after a value, found {repr(c) if c else 'the end'}")

    def at_end(self) -> bool:
        return self.peek() == ""


def text_lines(data: bytes) -> int:
    return data.count(b"\n")


def _clip(text: str) -> str:
    if len(text) <= RAW_KEEP:
        return text
    return f"{text[:RAW_KEEP]}… [{len(text) - RAW_KEEP} more characters]"
