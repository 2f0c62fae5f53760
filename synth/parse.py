"""Parsing and verification of teacher output: the final `Answer: X`, echo detection, judge scores."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

# "Answer: B", "**Answer:** (B)", "Final answer - B. Graves", "ANSWER：yes"; the last one in the text wins.
_ANSWER_LINE = re.compile(
    r"^[ \t>*_#`-]*(?:the\s+)?(?:final|correct|best)?\s*answer\s*(?:is)?[ \t*_`]*[:：=\-][ \t]*(?P<ans>.*?)[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
# Prose fallback: "... so the correct answer is (C)".
_ANSWER_PROSE = re.compile(
    r"(?:the\s+)?(?:final|correct|best|right)\s+(?:answer|option|choice)\s+is\s*[:\-]?\s*(?P<ans>[^\n]+)",
    re.IGNORECASE,
)
_MARKUP = re.compile(r"[*_`\"'“”‘’]")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_COMBINING = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def _clean(text: str) -> str:
    return _MARKUP.sub("", text).strip()


#: ASCII fast path of `words`: every byte that is not an ASCII letter or digit becomes a space.
_ASCII_SPLIT = bytes(c if c < 128 and chr(c).isalnum() else 32 for c in range(256))
#: the same for UTF-8 text: bytes >= 128 (parts of multi-byte characters) are kept as they are.
_ASCII_SPLIT_KEEP_HIGH = bytes(c if c >= 128 or chr(c).isalnum() else 32 for c in range(256))
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def words(text: str | None) -> list[str]:
    """Case-folded, accent-free, punctuation-free words (what `norm` joins with spaces): the runs of
    `str.isalnum` characters after NFKD, dropping combining marks, and `casefold`.

    ASCII text (nearly every teacher reply) takes a bytes `translate` + `split`: the same words as the regex,
    3x faster (4.4 vs 13.8 us per MedQA question; the `cot` step runs this on every reply and question, see
    benchmarks/teacher_client.py). Other text (half the MedQA questions: `°`, `µ`, `–`) turns its few
    distinct non-alphanumeric non-ASCII characters into spaces and then takes the same bytes path (UTF-8
    bytes of the remaining letters are all >= 128, so `translate` leaves them alone): 3x faster than the
    regex (about 12 vs 40 us per question), the same words
    (tests/test_teacher_batching.py::test_words_matches_its_regex_definition_on_real_text).
    Issue 17c: the whole-text `casefold` (3 us) became one per distinct non-ASCII character (memoised, exact:
    `str.casefold` maps character by character) and the combining-mark `sub` (2.8 us) runs only when a
    combining mark is present: 16.6 -> about 11 us per non-ASCII MedQA question."""
    if not text:
        return []
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_SPLIT).lower().decode("ascii").split()
    t = unicodedata.normalize("NFKD", text)
    chars = set(_NON_ASCII.findall(t))
    if any(map(_COMBINING.match, chars)):  # most texts have none: skip the scan of the whole text
        t = _COMBINING.sub("", t)
        chars = {ch for ch in chars if not _COMBINING.match(ch)}
    for ch in chars:  # casefold per distinct character (str.casefold maps character by character)
        folded = _FOLD.get(ch) or _fold(ch)
        if folded != ch:
            t = t.replace(ch, folded)
    return t.encode("utf-8").translate(_LOWER_SPLIT_KEEP_HIGH).decode("utf-8").split()


#: non-ASCII character -> its casefold, non-alphanumeric non-ASCII characters of it made spaces (`_fold`)
_FOLD: dict[str, str] = {}
#: `_ASCII_SPLIT_KEEP_HIGH` that also lower-cases A-Z (casefold of ASCII text is its lower case)
_LOWER_SPLIT_KEEP_HIGH = bytes(c if c >= 128 or chr(c).isalnum() else 32 for c in range(256)).translate(
    bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz"))


def _fold(ch: str) -> str:
    folded = "".join(c if c.isascii() or c.isalnum() else " " for c in ch.casefold())
    if len(_FOLD) < 65_536:
        _FOLD[ch] = folded
    return folded


def words_regex(text: str | None) -> list[str]:
    """The reference definition of `words` (one regex over the normalised text), kept for the tests."""
    if not text:
        return []
    t = _COMBINING.sub("", unicodedata.normalize("NFKD", text))
    return _WORD.findall(t.casefold())


def norm(text: str | None) -> str:
    """Case-folded, accent-free, punctuation-free words joined by single spaces."""
    return " ".join(words(text))


@dataclass(frozen=True)
class Found:
    """A located final answer: the raw answer text and where its line starts (the body ends there)."""

    text: str
    start: int


def find_answer(text: str) -> Found | None:
    """The last `Answer: ...` line; else the last prose 'the correct answer is ...'."""
    matches = [m for m in _ANSWER_LINE.finditer(text) if _clean(m.group("ans"))]
    if matches:
        m = matches[-1]
        return Found(_clean(m.group("ans")), m.start())
    prose = list(_ANSWER_PROSE.finditer(text))
    if prose:
        m = prose[-1]
        return Found(_clean(m.group("ans")).rstrip("."), m.start())
    return None


_LABEL = re.compile(r"^[(\[]?(?:option\s+|choice\s+)?(?P<label>[A-Za-z0-9]{1,2})[)\].:,]?(?=\s|$)", re.IGNORECASE)
_MORE = re.compile(r"^\s*(?:,|and|or|&|/)\s*[(\[]?[A-Za-z0-9]{1,2}[)\]]?(?:\s|$|[.,])", re.IGNORECASE)


def parse_mcq(answer: str, options: list[dict[str, Any]]) -> str | None:
    """Option label from an answer text: 'B', '(B)', 'B. Graves disease', 'Option B' or the option text.

    Returns None when no label is found or when several labels are named ('B or C').
    """
    labels = {str(o["label"]).casefold(): str(o["label"]) for o in options}
    m = _LABEL.match(answer.strip())
    if m and m.group("label").casefold() in labels:
        rest = answer.strip()[m.end():]
        if _MORE.match(rest):
            return None
        label = labels[m.group("label").casefold()]
        rest_n = norm(rest)
        if not rest_n:
            return label
        # "B. <text>": the text, when given, must be option B's (otherwise the line contradicts itself)
        texts = {norm(o["text"]): str(o["label"]) for o in options}
        if rest_n in texts and texts[rest_n] != label:
            return None
        return label
    # the option text itself, without a label
    a = norm(answer)
    hits = [str(o["label"]) for o in options if norm(o["text"]) and norm(o["text"]) == a]
    return hits[0] if len(hits) == 1 else None


def parse_ynm(answer: str) -> str | None:
    words = norm(answer).split()
    return words[0] if words and words[0] in ("yes", "no", "maybe") else None


def open_matches(answer: str, gold: str, min_recall: float = 0.7) -> bool:
    """Free-text answer vs gold: equal, containing it, or covering most of its words."""
    a, g = norm(answer), norm(gold)
    if not a or not g:
        return False
    if a == g or f" {g} " in f" {a} ":
        return True
    gw = set(g.split())
    return len(gw & set(a.split())) / len(gw) >= min_recall


def novel_words(body: str | list[str], source: str | list[str] | set[str]) -> int:
    """Words of `body` that are not in `source` (the question and options): an echo has almost none.

    Both may be given as text or as already-normalised word lists (or, for `source`, a word set)."""
    src = source if isinstance(source, set) else set(source if isinstance(source, list) else words(source))
    body = body if isinstance(body, list) else words(body)
    return len(body) - sum(map(src.__contains__, body))


def copied_fraction(body: str | list[str], source: str | list[str], n: int = 5) -> float:
    """Share of the body's word n-grams that appear verbatim in the source.

    n-grams are built with `zip` over shifted word lists: the same tuples as slicing, about 3x faster
    (the `cot` step verifies every teacher reply on the event-loop thread, see benchmarks/teacher_client.py).
    Only source n-grams whose first word occurs in the body can match a body n-gram, so only those are
    built: a real explanation shares few words with the question, and this halves the cost (about 30 -> 12 us
    per MedQA reply); for an echo it is the same work as before and the result is identical either way."""
    bw = body if isinstance(body, list) else words(body)
    sw = source if isinstance(source, list) else words(source)
    if len(bw) < n:
        return 1.0 if bw and " ".join(bw) in " ".join(sw) else 0.0
    grams = list(zip(*(bw[i:] for i in range(n)), strict=False))
    first = {g[0] for g in grams}
    src = {tuple(sw[i : i + n]) for i in range(len(sw) - n + 1) if sw[i] in first}
    return sum(map(src.__contains__, grams)) / len(grams)


def echo_measures(body: list[str], source: list[str], max_copied: float, n: int = 5) -> tuple[int, float | None]:
    """`(novel_words(body, source), copied_fraction(body, source, n))` for echo detection, except that the
    copied fraction is None when it cannot exceed `max_copied`.

    A body n-gram can be copied only if all its words occur in the source, so the share of n-grams inside
    runs of source words bounds the copied fraction from above. For a real explanation that bound is below
    `max_copied` and the n-gram sets are never built: about 4 us per MedQA reply instead of about 25 us for
    both exact measures (the `cot` step verifies every reply on the event-loop thread). When the bound is
    above, the exact fraction is computed, so the echo decision is the same as with the exact measures."""
    shared = set(body).intersection(source)  # body words that occur in the source (no set of the source built)
    flags = bytes(map(shared.__contains__, body))  # 1 where the body word occurs in the source
    new = len(body) - sum(flags)
    if len(body) >= n:
        grams = len(body) - n + 1
        runs = re.findall(b"\x01{%d,}" % n, flags)  # runs of n or more source words (few; scanned in C)
        bound = (sum(map(len, runs)) - (n - 1) * len(runs)) / grams
        if bound <= max_copied:
            return new, None
    return new, copied_fraction(body, source, n)


_SCORE_PATTERNS = (
    re.compile(r"score\s*[*_`]*\s*[:=\-]?\s*[*_`]*\s*(?P<s>\d+(?:\.\d+)?)\s*(?:/\s*10|out of 10)?", re.IGNORECASE),
    re.compile(r"(?P<s>\d+(?:\.\d+)?)\s*(?:/\s*10|out of 10)\b", re.IGNORECASE),
    re.compile(r"[\"']score[\"']\s*:\s*(?P<s>\d+(?:\.\d+)?)", re.IGNORECASE),
)


def parse_score(text: str, low: float = 1.0, high: float = 10.0) -> float | None:
    """The judge's score: the last `Score: N`, `N/10` or JSON `"score": N` in range; else a lone number."""
    for pat in _SCORE_PATTERNS:
        found = [float(m.group("s")) for m in pat.finditer(text)]
        found = [s for s in found if low <= s <= high]
        if found:
            return found[-1]
    bare = _clean(text).strip().rstrip(".")
    if re.fullmatch(r"\d+(?:\.\d+)?", bare) and low <= float(bare) <= high:
        return float(bare)
    return None
