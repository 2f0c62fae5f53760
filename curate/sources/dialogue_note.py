"""Doctor-patient dialogue -> clinical note (`format: mts-dialog`, `format: aci-bench`).

The dialogue is the source text and the note the target: `question` = the dialogue with its line
structure kept (one speaker line per line; CRLF -> LF), `answer` = the note (section headings and
paragraphs kept), task `summarization`, sub-task `note_generation`.

- MTS-Dialog CSV: ID, section_header, section_text, dialogue ("Doctor: ...\\nPatient: ..."). The
  note is one section; its header code (GENHX, CC, ...) goes to `subject` as words ("history of present
  illness"), so a template can name the section.
- ACI-BENCH CSV (dataset, encounter_id, dialogue, note) or JSON ({"data": [{file, src, tgt}]}):
  a full visit ("[doctor] ...\\n[patient] ...") to a full note; `subject` stays empty (templates then
  ask for the whole "clinical note").
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from curate.sources.base import Adapter, RawRow, Reject, register_adapter, require, text_of
from curate.sources.files import read_records

#: MTS-Dialog's 20 normalised section headers, in words.
SECTIONS = {
    "GENHX": "history of present illness", "CC": "chief complaint", "PASTMEDICALHX": "past medical history",
    "FAM/SOCHX": "family and social history", "ROS": "review of systems", "PASTSURGICAL": "past surgical history",
    "ALLERGY": "allergies", "MEDICATIONS": "medications", "ASSESSMENT": "assessment", "EXAM": "physical exam",
    "DIAGNOSIS": "diagnosis", "DISPOSITION": "disposition", "PLAN": "plan", "EDCOURSE": "emergency department course",
    "IMMUNIZATIONS": "immunizations", "IMAGING": "imaging", "GYNHX": "gynecologic history",
    "PROCEDURES": "procedures", "OTHER_HISTORY": "other history", "LABS": "laboratory results",
}


def lines(text: str) -> str:
    """Line ends unified to LF; trailing spaces on each line dropped (MTS-Dialog ends lines with ' \\r\\n')."""
    return "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")).strip()


def note_record(source_id: Any, dialogue: Any, note: Any, subject: str | None) -> dict[str, Any]:
    d, n = text_of(dialogue), text_of(note)
    if d is None:
        raise Reject("empty_question", "the dialogue is empty", field="dialogue")
    if n is None:
        raise Reject("empty_answer", "the note is empty", field="note")
    return {"source_id": text_of(source_id), "task": "summarization", "question": lines(d), "context": None,
            "options": [], "answer": lines(n), "subject": subject, "subtask": "note_generation"}


def _mapping(obj: Any) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise Reject("malformed_row", f"expected one dialogue record, got {type(obj).__name__}")
    return obj


@register_adapter
class MTSDialog(Adapter):
    name = "mts-dialog"
    description = "MTS-Dialog CSV: ID, section_header, section_text, dialogue -> note section"
    folder_glob = ("*.csv",)

    def read_file(self, path: Path) -> Iterator[RawRow]:
        """IDs restart at 0 in every MTS-Dialog file: with several files, the file's stem prefixes them."""
        for row in read_records(path):
            if len(self.ctx.files) > 1 and row.error is None and isinstance(row.obj, Mapping):
                row.obj = {**row.obj, "ID": f"{path.stem}:{row.obj.get('ID')}"}
            yield row

    def convert(self, obj: Any) -> dict[str, Any]:
        obj = _mapping(obj)
        header = (text_of(obj.get("section_header")) or "").strip()
        return note_record(obj.get("ID"), require(obj, "dialogue"), require(obj, "section_text"),
                           SECTIONS.get(header.upper(), header.lower() or None))


@register_adapter
class ACIBench(Adapter):
    name = "aci-bench"
    description = "ACI-BENCH: CSV (dataset, encounter_id, dialogue, note) or JSON {data: [{file, src, tgt}]}"
    folder_glob = ("*.csv",)  # a folder: the CSVs (valid.json repeats valid.csv); *_metadata.csv are skipped

    def read_file(self, path: Path) -> Iterator[RawRow]:
        if path.name.endswith("_metadata.csv"):  # doctor / patient names and complaints: no dialogue, no note
            return iter(())
        return read_records(path)

    def convert(self, obj: Any) -> dict[str, Any]:
        obj = _mapping(obj)
        if "src" in obj or "tgt" in obj:  # the JSON release
            sid = (text_of(obj.get("file")) or "").partition("-")[0]  # "D2N068-virtassist"
            return note_record(sid or None, require(obj, "src"), require(obj, "tgt"), None)
        return note_record(obj.get("encounter_id"), require(obj, "dialogue"), require(obj, "note"), None)
