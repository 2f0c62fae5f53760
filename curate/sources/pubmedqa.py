"""PubMedQA (PQA-L style): task `yes_no_maybe` with the abstract as context.

Layouts read:

- `ori_pqal.json` style: a JSON object keyed by PMID, each entry with `QUESTION`, `CONTEXTS` (list),
  `LABELS` (section names, optional), `final_decision`, `LONG_ANSWER`;
- the split files `test_set.json` / `test.json` with labels in a sibling `<name>_ground_truth.json`
  (`test_ground_truth.json`: PMID -> yes/no/maybe). When the sibling exists its label is used; if an
  entry also has its own `final_decision` and the two differ the row is rejected (`label_conflict`);
- the Hub's `qiaojin/PubMedQA` (`pqa_labeled`, `pqa_artificial`): `pubid`, `question`,
  `context` {`contexts`, `labels`, `meshes`}, `long_answer`, `final_decision`.

Record: question; context = the abstract's sections, one per line, each prefixed with its label
(`RESULTS: ...`) when labels are given; options are `yes`, `no`, `maybe` (label and text are the
same word, so the answer is the word itself, as the canonical record wants for this task);
explanation = the long answer; source_id = the PMID (a PMID seen twice is `duplicate_source_id`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from curate.errors import InputError
from curate.sources.base import Adapter, RawRow, Reject, register_adapter, require, text_of
from curate.sources.files import iter_json_records, load_json
from curate.sources.jsonstream import JsonCursor, JsonSyntaxError
from curate.sources.readers import item_row, open_read, sniff_json, syntax_error

CHOICES = ("yes", "no", "maybe")
OPTIONS = [{"label": c, "text": c} for c in CHOICES]


def _ground_truth(path: Path) -> dict[str, Any] | None:
    stem = path.stem.removesuffix("_set")
    for name in (f"{path.stem}_ground_truth.json", f"{stem}_ground_truth.json"):
        cand = path.with_name(name)
        if cand.is_file() and cand != path:
            truth = load_json(cand)
            if not isinstance(truth, dict):
                raise InputError("expected a JSON object mapping PMID to yes/no/maybe", file=str(cand))
            return truth
    return None


@register_adapter
class PubMedQA(Adapter):
    name = "pubmedqa"
    description = "PubMedQA ori_pqal.json-style dict by PMID (+ *_ground_truth.json), or qiaojin/PubMedQA"
    folder_glob = "*.json"

    def read_file(self, path: Path) -> Iterator[RawRow]:
        if path.name.endswith("_ground_truth.json"):
            return iter(())  # read together with its questions file
        if path.suffix.lower() in (".jsonl", ".ndjson") or sniff_json(path) != "object":
            return iter_json_records(path)  # JSON lines / a list of Hub-style or converted rows
        return self._entries(path, _ground_truth(path))

    def _entries(self, path: Path, truth: dict[str, Any] | None) -> Iterator[RawRow]:
        """The PMID-keyed object read entry by entry (duplicate PMIDs are kept, in file order)."""
        with open_read(path) as fh:
            try:
                cur = JsonCursor(fh)
                for pmid in cur.members():
                    if pmid == "data" and cur.peek() == "[":  # {"data": [...]}: a list of rows
                        for i, item in enumerate(cur.elements(), 1):
                            yield item_row(path, item, f"{path.name} data record {i}")
                        continue
                    row = item_row(path, cur.item(), f"{path.name} PMID {pmid}")
                    if row.error is None and isinstance(row.obj, Mapping):
                        row.obj = dict(row.obj, _pmid=pmid)  # raw text: the entry + its _pmid
                        if truth is not None:
                            row.obj["_truth"] = truth.get(pmid)
                    yield row
                if not cur.at_end():
                    raise cur.error("extra data after the JSON document")
            except JsonSyntaxError as err:
                raise syntax_error(path, err) from None

    def convert(self, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, Mapping):
            raise Reject("malformed_row", f"expected a JSON object, got {type(obj).__name__}")
        if "_pmid" in obj:  # original layout
            pmid, question = obj["_pmid"], require(obj, "QUESTION")
            contexts, labels = require(obj, "CONTEXTS"), obj.get("LABELS")
            explanation, decision_field = obj.get("LONG_ANSWER"), "final_decision"
        else:  # Hub layout
            pmid, question = require(obj, "pubid"), require(obj, "question")
            ctx = require(obj, "context")
            if not isinstance(ctx, Mapping):
                raise Reject("malformed_row", "field 'context' must be an object with 'contexts'", field="context")
            contexts, labels = require(ctx, "contexts"), ctx.get("labels")
            explanation, decision_field = obj.get("long_answer"), "final_decision"
        if isinstance(contexts, str):
            contexts = [contexts]
        if not isinstance(contexts, list):
            raise Reject("malformed_row", "the contexts must be a list of strings", field="CONTEXTS")
        if isinstance(labels, list) and len(labels) == len(contexts) and all(labels):
            context = "\n".join(f"{lab}: {txt}" for lab, txt in zip(labels, contexts, strict=True))
        else:
            context = "\n".join(str(c) for c in contexts)

        own = obj.get(decision_field)
        if "_truth" in obj:
            decision = obj["_truth"]
            if decision is None:
                raise Reject("unlabelled", f"PMID {pmid} is not in the ground-truth file")
            if own is not None and str(own).strip().lower() != str(decision).strip().lower():
                raise Reject("label_conflict",
                             f"final_decision {own!r} differs from the ground-truth file's {decision!r}")
        else:
            decision = require(obj, decision_field)
        answer = str(decision).strip().lower()
        if answer not in CHOICES:
            raise Reject("answer_not_in_options", f"final_decision {decision!r} is not yes, no or maybe")
        return {
            "source_id": str(pmid),
            "task": "yes_no_maybe",
            "question": str(question),
            "context": context,
            "options": OPTIONS,
            "answer": answer,
            "explanation": text_of(explanation),
        }
