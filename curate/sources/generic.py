"""Any QA file or Hub dataset, mapped to the canonical record by the recipe's `columns:`.

Files: JSON lines (`.jsonl`, or `.json` holding one object per line), JSON (an array of records, or
`{"data": [...]}`), parquet, CSV / TSV with a header row. A folder means all such files in it.
Hub: `hub: org/name@revision` with `config` and `split`, read with `datasets.load_dataset`.

Mapping (`curate.recipe.ColumnMap`); a column name may be a dotted path into nested objects
(`context.contexts`):

- `options`: several columns, one option each (labels A, B, ... or `option_labels`; a blank or
  missing cell means "no such option"), or one column holding a list of texts, a list of
  `{label, text}` / `{key, value}` objects, or a `{label: text}` object (JSON text in a CSV cell
  is parsed); in a list of texts, letter prefixes written in order (`"A. ..."`, `"B) ..."`) become
  the labels;
- `answer` with `answer_format`: `label` (matched trimmed, case-insensitive; `"B. text"` too), `index0`,
  `index1`, or `text` (one option's text after whitespace/case normalisation, or `"B"` / `"B. text"`
  naming it); an answer that matches
  no option is rejected as `answer_not_in_options`;
- `task`: default `mcq` when options are mapped, else `open_qa` (answer = the gold text). For
  `yes_no_maybe` the options are always yes/no/maybe and the answer must resolve to one of them.

A mapped column that a schema-ful file (CSV, parquet, Hub) lacks, or that no JSON row has, is an
`InputError` (a wrong mapping), not thousands of rejects.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from curate.errors import InputError, RecipeError
from curate.recipe import ColumnMap
from curate.sources.base import (
    LETTERS,
    Adapter,
    RawRow,
    ReadContext,
    Reject,
    get_path,
    match_answer,
    match_index,
    match_label,
    options_from,
    options_from_list,
    register_adapter,
    require,
    text_of,
)
from curate.sources.files import columns_of, read_records

YNM = ("yes", "no", "maybe")


def _parse_cell(value: Any) -> Any:
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


@register_adapter
class Generic(Adapter):
    name = "generic"
    description = "jsonl / json / parquet / csv file(s) or a Hub dataset, mapped by the recipe's `columns:`"
    folder_glob = ("*.jsonl", "*.json", "*.parquet", "*.csv", "*.tsv")

    def __init__(self, ctx: ReadContext):
        super().__init__(ctx)
        cm = ctx.spec.columns
        if cm is None:  # the recipe model already requires it; guard for direct callers
            raise RecipeError(f"source {ctx.spec.name!r} with format 'generic' needs a `columns` mapping")
        self.cm: ColumnMap = cm
        if isinstance(cm.options, list):
            labels = cm.option_labels or list(LETTERS[: len(cm.options)])
            if len(labels) != len(cm.options):
                raise RecipeError(f"source {ctx.spec.name!r}: columns.option_labels has {len(labels)} labels "
                                  f"for {len(cm.options)} option columns")
            self.option_columns = list(zip(labels, cm.options, strict=True))
        else:
            self.option_columns = []
        self.optional = {c for c in (cm.context, cm.explanation, cm.subject, cm.id) if c}
        self.optional |= {c for _, c in self.option_columns}
        self.seen: set[str] = set()
        self.rows = 0

    # --- reading ---------------------------------------------------------------------------------

    def _mapped(self) -> list[str]:
        names = [self.cm.question, self.cm.answer, *self.optional]
        if isinstance(self.cm.options, str):
            names.append(self.cm.options)
        return names

    def _check_columns(self, available: list[str], where: str) -> None:
        missing = [c for c in self._mapped() if c.split(".")[0] not in available and c not in available]
        if missing:
            raise InputError(
                f"mapped column(s) {', '.join(repr(c) for c in missing)} not found; "
                f"columns are: {', '.join(available)}", file=where, field=missing[0],
                hint=f"fix `columns:` of source {self.ctx.spec.name!r} in the recipe",
            )

    def read_file(self, path: Path) -> Iterator[RawRow]:
        cols = columns_of(path)
        if cols is not None:
            self._check_columns(cols, str(path))
        return read_records(path)

    def read_hub(self, dataset: Any) -> Iterator[RawRow]:
        self._check_columns(list(dataset.column_names), str(self.ctx.spec.hub))
        return super().read_hub(dataset)

    # --- mapping ---------------------------------------------------------------------------------

    def _get(self, obj: Mapping[str, Any], col: str | None) -> Any:
        if not col:
            return None
        try:
            value = get_path(obj, col)
        except KeyError:
            return None
        self.seen.add(col)
        return value

    def _options(self, obj: Mapping[str, Any]) -> list[dict[str, str]]:
        if self.option_columns:
            pairs = [(lab, self._get(obj, col)) for lab, col in self.option_columns]
            return options_from((lab, v) for lab, v in pairs if text_of(v) is not None)
        if not isinstance(self.cm.options, str):
            return []
        value = _parse_cell(require(obj, self.cm.options))
        if isinstance(value, Mapping):
            return options_from(value.items())
        if isinstance(value, (list, tuple)):
            if value and all(isinstance(v, Mapping) for v in value):
                if not all("label" in v or "key" in v for v in value):
                    raise Reject("malformed_row", "option objects need label/text (or key/value) fields",
                                 field=self.cm.options)
                return options_from((v.get("label", v.get("key")), v.get("text", v.get("value"))) for v in value)
            if not self.cm.option_labels:
                return options_from_list(value)  # A, B, ...; "A. text" prefixes become the labels
            labels = self.cm.option_labels
            if len(value) > len(labels):
                raise Reject("malformed_row", f"{len(value)} options but only {len(labels)} labels",
                             field=self.cm.options)
            return options_from(zip(labels, value, strict=False))
        raise Reject("malformed_row", f"column {self.cm.options!r} must hold a list or an object of options, "
                                      f"got {type(value).__name__}", field=self.cm.options)

    def _resolve(self, raw: Any, options: list[dict[str, str]]) -> str:
        fmt = self.cm.answer_format
        if fmt == "label":
            return match_label(raw, options)
        if fmt == "index0":
            return match_index(raw, options, 0)
        if fmt == "index1":
            return match_index(raw, options, 1)
        return match_answer(raw, options)  # the option's text, its label, or "B. text"

    def convert(self, obj: Any) -> dict[str, Any]:
        self.rows += 1
        if not isinstance(obj, Mapping):
            raise Reject("malformed_row", f"expected an object (one record), got {type(obj).__name__}")
        cm = self.cm
        question = require(obj, cm.question)
        raw_answer = require(obj, cm.answer)
        if isinstance(raw_answer, (list, tuple)) and len(raw_answer) == 1:
            raw_answer = raw_answer[0]
        options = self._options(obj)
        task = cm.task or ("mcq" if options else "open_qa")
        if task == "yes_no_maybe":
            gold = raw_answer
            if options:
                label = self._resolve(raw_answer, options)
                gold = next(o["text"] for o in options if o["label"] == label)
            answer = str(gold).strip().lower()
            if answer not in YNM:
                raise Reject("answer_not_in_options", f"answer {gold!r} is not yes, no or maybe")
            options = [{"label": c, "text": c} for c in YNM]
        elif options:
            answer = self._resolve(raw_answer, options)
        elif task == "mcq":
            raise Reject("missing_field", "no options in the mapped column(s) for an mcq row",
                         field=cm.options if isinstance(cm.options, str) else None)
        else:
            answer = text_of(raw_answer) or ""
        return {
            "source_id": text_of(self._get(obj, cm.id)),
            "task": task,
            "question": text_of(question) or "",
            "context": text_of(self._get(obj, cm.context)),
            "options": options,
            "answer": answer,
            "explanation": text_of(self._get(obj, cm.explanation)),
            "subject": text_of(self._get(obj, cm.subject)),
        }

    def finish(self) -> None:
        never = sorted(self.optional - self.seen)
        if self.rows and never:
            raise InputError(
                f"mapped column(s) {', '.join(repr(c) for c in never)} appear in none of the {self.rows} rows read",
                file=", ".join(str(f) for f in self.ctx.files[:3]) or self.ctx.spec.hub, field=never[0],
                hint=f"fix `columns:` of source {self.ctx.spec.name!r} in the recipe",
            )
