"""Token accounting cost: the one pass over a build's output parts (`curate.runner.tokens.output_keys`).

Input: real rows plus edited copies (`_data.throughput_rows`), templated by the `template` step (so the
counted text is the chat a row trains on), written as output parts of --batch-rows rows. Counted with
the words + punctuation estimate and with a byte-level BPE trained here on the rows (--vocab tokens; no
download) or the tokenizer given with --tokenizer (a tokenizer.json / folder / cached Hub id).
Printed: seconds (median of --repeat with min-max), rows/s, tokens/s, and what the rate means for the
Aloe Beta SFT mix (1.8B tokens): the accounting pass's share of a build that names a tokenizer.

    python benchmarks/token_accounting.py [--rows 20000 100000] [--repeat 3] [--tokenizer PATH]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import polars as pl
from _data import throughput_rows
from _timing import measure

from curate.runner.tokens import output_keys
from curate.steps import BuildContext, get_step
from curate.tokens import TokenCounter, token_counter

ALOE_TOKENS = 1_800_000_000


def write_parts(frame: pl.DataFrame, folder: Path, batch_rows: int) -> list[Path]:
    ctx = BuildContext(recipe_name="bench", work_dir=folder / "work")
    parts = []
    for i, chunk in enumerate(frame.iter_slices(batch_rows)):
        path = folder / f"part-{i:05d}.parquet"
        get_step("template")({}).apply(chunk, ctx).kept.write_parquet(path)
        parts.append(path)
    return parts


def trained_bpe(frame: pl.DataFrame, path: Path, vocab: int) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(frame["question"].head(20_000).to_list(), trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=["[UNK]"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tok.save(str(path))
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[20_000, 100_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch-rows", type=int, default=50_000)
    ap.add_argument("--vocab", type=int, default=8_000)
    ap.add_argument("--tokenizer", help="tokenizer.json / folder / cached Hub id (default: a BPE trained here)")
    args = ap.parse_args()
    print("| rows | counter | seconds (min-max) | rows/s | tokens | tokens/s | Aloe 1.8B tokens: minutes |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        frame = throughput_rows(max(args.rows))
        exact = token_counter(args.tokenizer) if args.tokenizer else TokenCounter(
            f"byte-level BPE, {args.vocab} tokens", trained_bpe(frame, Path(tmp) / "bpe.json", args.vocab))
        for n in args.rows:
            folder = Path(tmp) / f"rows-{n}"
            folder.mkdir()
            parts = write_parts(frame.head(n), folder, args.batch_rows)
            for counter in (TokenCounter(), exact):
                t = measure(lambda c=counter, p=parts: output_keys(p, c), args.repeat)
                tokens = int(t.result["tokens"].sum())
                rate = tokens / t.median
                print(f"| {n} | {counter.name} | {t.cell()} | {t.rate(n):,.0f} | {tokens:,} | {rate:,.0f} "
                      f"| {ALOE_TOKENS / rate / 60:.1f} |", flush=True)


if __name__ == "__main__":
    main()
