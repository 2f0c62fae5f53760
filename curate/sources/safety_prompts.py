"""Unsafe-prompt sets for red-team preference data (`format: safety_prompts`).

One adapter reads the public safety layouts in ../shared/data/safety/ (the layout is recognised per row
by its columns, so one source may be a folder or glob that mixes files of one layout):

| layout                         | question                  | reference_response | topic                          | category            |
|--------------------------------|---------------------------|--------------------|--------------------------------|---------------------|
| MedSafetyBench CSV             | `harmful_medical_request` | `safe_response`    | `ama-principle-<N>` (file name) | `gpt4` / `llama2` (folder) |
| Alpaca JSON (ft_safety_med)    | `instruction` (+ `input`) | `output`           | null                           | null                |
| AART CSV                       | `prompt`                  | null               | `crime`                        | `medium_keyword`    |
| forbidden_question_set CSV     | `question`                | null               | `content_policy_name`          | `content_policy_name` |

Every record is `task: open_qa` with `answer` null: the gold is not an answer but "do not help", so the
record id is the hash of the prompt alone, and the same request read from two sets (the 100 Alpaca rows
all repeat MedSafetyBench requests) is one id, dropped at ingest as `duplicate_id`. `source_id` is
`<folder>/<file stem>:<row>` because MedSafetyBench numbers rows per file (0..49 in every category file,
the same stems under gpt4/ and llama2/).
The jailbreak prompt file is not a prompt set: the `attack` step imports it as templates.

Reject reasons: `malformed_row` (not an object / layout not recognised), `missing_field` (blank request).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from curate.sources.base import Adapter, RawRow, Reject, register_adapter, text_of
from curate.sources.files import read_records

_CATEGORY_FILE = re.compile(r"category_(\d+)")
_FILE_KEY = "__safety_file"  # (stem, parent folder name), attached by read_file for per-file labels


@register_adapter
class SafetyPrompts(Adapter):
    name = "safety_prompts"
    description = "unsafe-prompt sets: MedSafetyBench CSV, Alpaca JSON, AART CSV, forbidden-question CSV"
    folder_glob = ("*.csv", "*.json", "*.jsonl")
    extra_columns = {"topic": pl.Utf8, "category": pl.Utf8, "reference_response": pl.Utf8}

    def read_file(self, path: Path) -> Iterator[RawRow]:
        for n, row in enumerate(read_records(path)):
            if isinstance(row.obj, dict):
                row.obj = {**row.obj, _FILE_KEY: (path.stem, path.parent.name, n)}
            yield row

    def convert(self, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, Mapping):
            raise Reject("malformed_row", f"expected an object (one record), got {type(obj).__name__}")
        self.rows = getattr(self, "rows", 0) + 1
        stem, folder, n = obj.get(_FILE_KEY) or (self.ctx.spec.name, "", self.rows - 1)  # Hub rows: a counter
        if "harmful_medical_request" in obj:
            m = _CATEGORY_FILE.search(stem)
            question, ref = obj["harmful_medical_request"], obj.get("safe_response")
            topic, category = (f"ama-principle-{m.group(1)}" if m else None), folder or None
            sid = obj.get("") if obj.get("") is not None else n
        elif "instruction" in obj and "output" in obj:
            question = "\n\n".join(t for t in (text_of(obj["instruction"]), text_of(obj.get("input"))) if t)
            ref, topic, category, sid = obj.get("output"), None, None, n
        elif "prompt" in obj and "crime" in obj:
            question, ref = obj["prompt"], None
            topic, category, sid = text_of(obj.get("crime")), text_of(obj.get("medium_keyword")), n
        elif "question" in obj and "content_policy_name" in obj:
            question, ref = obj["question"], None
            topic = category = text_of(obj.get("content_policy_name"))
            sid = obj.get("q_id") if obj.get("content_policy_id") is None else f"{obj['content_policy_id']}-{obj.get('q_id')}"
        else:
            keys = ", ".join(sorted(k for k in obj if k != _FILE_KEY)[:8])
            raise Reject("malformed_row", f"columns ({keys}) match no safety-prompt layout; expected "
                         "harmful_medical_request, instruction+output, prompt+crime or question+content_policy_name")
        text = text_of(question)
        if text is None:
            raise Reject("missing_field", "the request text is blank", field="question")
        return {
            "source_id": f"{folder}/{stem}:{sid}" if folder else f"{stem}:{sid}",
            "task": "open_qa",
            "question": text.strip(),
            "context": None,
            "options": [],
            "answer": None,
            "topic": topic,
            "category": category,
            "reference_response": text_of(ref),
        }
