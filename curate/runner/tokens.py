"""Token accounting: tokens of the output rows per source, per task, per subtask and in total.

The Aloe mix is specified in tokens (about 1.8B for 2.0M rows), so a recipe may name a tokenizer
(`tokenizer:`: a local `tokenizer.json`, a folder holding one, or a Hub model id, read through the Hub
cache and so usable offline once cached). Counted text: the contents of the chat columns a row carries
(`messages`; for preference rows `prompt` + `chosen` + `rejected`), else question, context, options and
answer. Chat-template tokens are not counted: they depend on the model being trained, not on the data
(a Llama-3 template adds about 10 tokens per turn). Counting streams the output parts in batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from curate.errors import RecipeError
from curate.runner.state import read_parts

CHAT_COLUMNS = ("messages", "prompt", "chosen", "rejected")


def load_tokenizer(ref: str, base_dir: Path) -> Any:
    """A `tokenizers.Tokenizer` from a file, a folder with tokenizer.json, or a Hub id."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise RecipeError("the recipe names a `tokenizer:` but the `tokenizers` package is not installed",
                          hint="pip install 'medcurate[tokens]'") from None
    path = Path(ref) if Path(ref).is_absolute() else base_dir / ref
    if path.is_dir():
        path = path / "tokenizer.json"
    try:
        if path.is_file():
            return Tokenizer.from_file(str(path))
        return Tokenizer.from_pretrained(ref)
    except Exception as err:  # the tokenizers library raises plain Exceptions
        raise RecipeError(f"tokenizer {ref!r} could not be loaded: {err}",
                          hint="give a tokenizer.json path (relative to the recipe) or a Hub model id") from None


def _texts(frame: pl.DataFrame) -> pl.Series:
    chat = [c for c in CHAT_COLUMNS if c in frame.columns and isinstance(frame.schema[c], pl.List)]
    if chat:
        parts = [pl.col(c).list.eval(pl.element().struct.field("content")).list.join("\n").fill_null("")
                 for c in chat]
    else:
        opts = pl.col("options").list.eval(pl.element().struct.field("text")).list.join("\n").fill_null("")
        parts = [pl.col(c).fill_null("") for c in ("question", "context")] + [opts, pl.col("answer").fill_null("")]
    return frame.select(pl.concat_str(parts, separator="\n").alias("text")).to_series()


def count_tokens(tokenizer: Any, name: str, files: list[Path]) -> dict[str, Any]:
    """{tokenizer, total, rows, by_source, by_task[, by_subtask]} over the output parts."""
    counts = []
    for path in files:
        frame = read_parts([path])
        if frame.height == 0:
            continue
        enc = tokenizer.encode_batch(_texts(frame).to_list(), add_special_tokens=False)
        keys = [c for c in ("source", "task", "subtask") if c in frame.columns]
        counts.append(frame.select(keys).with_columns(pl.Series("tokens", [len(e.ids) for e in enc], pl.Int64)))
    frame = pl.concat(counts, how="diagonal_relaxed") if counts else pl.DataFrame(
        schema={"source": pl.Utf8, "task": pl.Utf8, "tokens": pl.Int64})
    out: dict[str, Any] = {"tokenizer": name, "total": int(frame["tokens"].sum()), "rows": frame.height}
    for key in ("source", "task", "subtask"):
        if key in frame.columns:
            g = frame.group_by(key).agg(pl.col("tokens").sum()).sort(key, nulls_last=True)
            out[f"by_{key}"] = {str(k): int(v) for k, v in g.iter_rows()}
    return out
