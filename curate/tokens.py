"""The text a row trains on and its tokens: the one home of both (manifest `tokens`, `composition`, `mix`).

Text of a row, first rule that gives text wins (one string, parts joined with "\\n", empty parts skipped):

1. a preference pair (`prompt` + `chosen` + `rejected` message contents): DPO trains on all three;
2. `messages`, the templated chat (what SFT trains on once `template` ran);
3. `turns`, the conversation as read (an untemplated multi-turn row);
4. the fields: question, context, option texts, answer.

Chat-template tokens are not counted: they depend on the model being trained, not on the data (a
Llama-3 template adds about 10 tokens a turn).

Tokens: with a tokenizer (`tokenizers` library, extra `tokens`: a `tokenizer.json` file, a folder holding
one (what `save_pretrained` writes for a fast tokenizer), or a Hub model id `org/name[@revision]` read from
the local Hugging Face cache only - never downloaded) the count is exact for that tokenizer; without one it
is an estimate: words and punctuation marks (`\\w+|[^\\w\\s]`), within about +-30% of a BPE count on English
medical text. The `tokenizers` library is enough (transformers, in the `train` extra, is ~10x the install).
The Aloe paper reports its mix in tokens (about 1.8B for 2.0M rows), hence `mix: {unit: tokens}`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import polars as pl

from curate.errors import RecipeError

ESTIMATE = r"\w+|[^\w\s]"
ESTIMATE_NAME = "estimate (words + punctuation)"
PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")
FIELD_COLUMNS = ("question", "context", "options", "answer")
#: Every column the text rule reads (a reader may load only these).
TEXT_COLUMNS = (*PREFERENCE_COLUMNS, "messages", "turns", *FIELD_COLUMNS)
#: `org/name` or `name`, optionally `@revision`: a Hub model id (checked only when no such file exists).
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(?:/[\w.-]+)?(?:@[\w./-]+)?")


def _joined(parts: list[pl.Expr]) -> pl.Expr:
    """The non-empty parts, one per line ("" when none)."""
    return pl.concat_list(parts).list.eval(pl.element().filter(pl.element().str.len_chars() > 0)).list.join("\n")


def _contents(col: str) -> pl.Expr:
    return pl.col(col).list.eval(pl.element().struct.field("content")).list.join("\n").fill_null("")


def row_text_expr(schema: Mapping[str, pl.DataType]) -> pl.Expr:
    """All the text a row trains on, as one string per row (the rule in the module docstring)."""
    def chat(c: str) -> bool:
        return isinstance(schema.get(c), pl.List)

    fields = [pl.col(c).fill_null("") for c in ("question", "context") if c in schema]
    if chat("options"):
        fields.append(pl.col("options").list.eval(pl.element().struct.field("text")).list.join("\n").fill_null(""))
    fields += [pl.col("answer").fill_null("")] if "answer" in schema else []
    text = _joined(fields) if fields else pl.lit("")
    for c in ("turns", "messages"):  # later rules are applied first, so that earlier ones win
        if chat(c):
            text = pl.when(pl.col(c).list.len().fill_null(0) > 0).then(_contents(c)).otherwise(text)
    pref = [c for c in PREFERENCE_COLUMNS if chat(c)]
    if pref:
        pair = _joined([_contents(c) for c in pref])
        text = pl.when(pair.str.len_chars() > 0).then(pair).otherwise(text)
    return text


@dataclass(frozen=True)
class TokenCounter:
    """How tokens are counted: `name` as the recipe / flag / step gave it (or the estimate's), `path` the
    tokenizer.json it loaded from (None: the estimate)."""

    name: str = ESTIMATE_NAME
    path: Path | None = None

    @property
    def exact(self) -> bool:
        return self.path is not None

    def count(self, texts: pl.Series) -> pl.Series:
        """Tokens per text (UInt32), without special tokens."""
        if self.path is None:
            return texts.str.count_matches(ESTIMATE).cast(pl.UInt32).alias("tokens")
        enc = _load(str(self.path), self.path.stat().st_mtime_ns).encode_batch(texts.to_list(), add_special_tokens=False)
        return pl.Series("tokens", [len(e.ids) for e in enc], dtype=pl.UInt32)


def token_counter(ref: str | None, base_dir: Path | None = None) -> TokenCounter:
    """The counter for `ref`: a tokenizer.json / folder (relative to `base_dir`, default the cwd) or a cached
    Hub id; None: the estimate. A ref that cannot be loaded is a RecipeError (raised before any row is read)."""
    if ref is None:
        return TokenCounter()
    counter = TokenCounter(ref, _tokenizer_file(ref, base_dir or Path.cwd()))
    _load(str(counter.path), counter.path.stat().st_mtime_ns)  # fail fast on a file that is no tokenizer
    return counter


def as_counter(tokenizer: str | TokenCounter | None) -> TokenCounter:
    """A counter as is, a tokenizer ref (relative to the cwd) loaded, None: the estimate."""
    return tokenizer if isinstance(tokenizer, TokenCounter) else token_counter(tokenizer)


def row_tokens(frame: pl.DataFrame, tokenizer: str | TokenCounter | None = None) -> pl.Series:
    """Tokens per row (UInt32) of the text rule: exact with a tokenizer, else the word + punctuation estimate."""
    return as_counter(tokenizer).count(frame.select(row_text_expr(frame.schema).alias("t"))["t"])


def _tokenizer_file(ref: str, base_dir: Path) -> Path:
    path = Path(ref).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if path.is_dir():
        if (path / "tokenizer.json").is_file():
            return path / "tokenizer.json"
        raise RecipeError(f"tokenizer {ref!r} could not be loaded: folder {path} has no tokenizer.json",
                          hint="save a fast tokenizer there: AutoTokenizer.from_pretrained(...).save_pretrained(folder)")
    if path.is_file():
        return path
    cached = None
    if HUB_ID.fullmatch(ref):
        from huggingface_hub import try_to_load_from_cache

        repo, _, revision = ref.partition("@")
        try:
            cached = try_to_load_from_cache(repo, "tokenizer.json", revision=revision or None)
        except ValueError:  # HFValidationError: not a valid repo id after all (e.g. "a--b")
            cached = None
    if isinstance(cached, str):  # a path; None or a "known missing" sentinel otherwise
        return Path(cached)
    raise RecipeError(f"tokenizer {ref!r} could not be loaded: no file {path}, and no Hub model {ref!r} with a "
                      "tokenizer.json in the local Hugging Face cache (tokenizers are never downloaded by a build)",
                      hint="give a tokenizer.json path (relative to the recipe) or a folder holding one, or cache "
                           f"the Hub one first: hf download {ref.partition('@')[0]} tokenizer.json")


@lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int) -> Any:
    """A `tokenizers.Tokenizer` (cached per file version: `mix` and the accounting load it once)."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise RecipeError("counting tokens with a tokenizer needs the `tokenizers` package, which is not installed",
                          hint="pip install 'medcurate[tokens]'") from None
    try:
        return Tokenizer.from_file(path)
    except Exception as err:  # the tokenizers library raises plain Exceptions
        raise RecipeError(f"tokenizer {path} could not be loaded: {err}",
                          hint="give a tokenizer.json written by the `tokenizers` / transformers libraries") from None
