"""Controlled, meaning-preserving rewordings of real benchmark questions (for benchmarks/decontamination.py
and the rephrase tests): how a benchmark item arrives in instruction data after someone "paraphrased" it.

Edits, all applied to every item (each records what it changed):
- `synonyms`: common words swapped for a synonym (our own table of ~80 pairs, case kept);
- `numbers`: number and unit formats ("5 mg" -> "5mg", "%" -> " percent", "mm Hg" -> "mmHg", small counts
  spelled out, "/min" -> " per minute", "°C" -> " degrees C");
- `clauses`: a leading subordinate clause ("After ..., she ...") moved to the end of its sentence;
- `reorder`: the vignette's middle sentences shuffled (the first sentence and the question stay in place);
- `options`: option order shuffled.
"""

from __future__ import annotations

import random
import re

SYNONYMS = {
    "patient": "individual", "presents": "comes in", "presented": "came in", "history": "background",
    "shows": "reveals", "showed": "revealed", "reveals": "shows", "revealed": "showed", "following": "listed",
    "most likely": "most probable", "diagnosis": "diagnostic impression", "treatment": "therapy",
    "physician": "doctor", "examination": "exam", "woman": "female", "man": "male", "boy": "male child",
    "girl": "female child", "child": "kid", "mother": "mom", "emergency department": "ER",
    "complains": "reports", "complaint": "concern", "pain": "discomfort", "weeks": "wks", "months": "mos",
    "days": "d", "hours": "hrs", "increased": "raised", "decreased": "lowered", "elevated": "raised",
    "normal": "unremarkable", "appropriate": "suitable", "management": "handling", "began": "started",
    "begins": "starts", "started": "began", "previously": "formerly", "blood pressure": "BP",
    "heart rate": "pulse", "temperature": "temp", "respiratory rate": "breathing rate",
    "laboratory": "lab", "studies": "tests", "otherwise": "else", "healthy": "well", "brought": "taken",
    "because of": "due to", "due to": "owing to", "associated with": "linked to", "caused by": "due to",
    "which": "what", "true": "correct", "false": "incorrect", "except": "other than", "drug": "medication",
    "medication": "drug", "disease": "illness", "condition": "disorder", "symptoms": "complaints",
    "cause": "etiology", "common": "frequent", "commonly": "frequently", "important": "key",
    "significant": "notable", "recent": "new", "severe": "marked", "mild": "slight", "large": "big",
    "small": "little", "finding": "result", "findings": "results", "test": "assay", "given": "administered",
    "administered": "given", "used": "employed", "seen": "observed", "found": "noted", "year": "yr",
}
_SYN = re.compile(r"\b(" + "|".join(sorted(map(re.escape, SYNONYMS), key=len, reverse=True)) + r")\b",
                  re.IGNORECASE)
_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine"}
_UNITS = [
    (re.compile(r"(\d) (mg|g|kg|mL|ml|L|mm|cm|mcg|µg|IU|U|mEq|mmol|mOsm)\b"), r"\1\2"),
    (re.compile(r"mm Hg"), "mmHg"),
    (re.compile(r"(\d)\s?%"), r"\1 percent"),
    (re.compile(r"/min\b"), " per minute"),
    (re.compile(r"°\s?C\b"), " degrees C"),
    (re.compile(r"°\s?F\b"), " degrees F"),
    (re.compile(r"\b([1-9]) (days?|weeks?|months?|years?|hours?|times|episodes?|children|pregnancies)\b"),
     lambda m: f"{_WORDS[int(m.group(1))]} {m.group(2)}"),
]
_LEAD = re.compile(r"^((?:After|When|While|Since|Because|During|Following|Despite|Although|Upon|On|In|At|"
                   r"If|Over|For|Before)\b[^,]{3,120}), (.+?)([.?!:]?)$")
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def synonyms(text: str) -> str:
    def swap(m: re.Match[str]) -> str:
        word = m.group(0)
        new = SYNONYMS[word.lower()]
        return new[0].upper() + new[1:] if word[0].isupper() else new

    return _SYN.sub(swap, text)


def numbers(text: str) -> str:
    for pattern, repl in _UNITS:
        text = pattern.sub(repl, text)
    return text


def move_clauses(text: str) -> str:
    out = []
    for s in _SENT.split(text):
        m = _LEAD.match(s)
        if m:
            lead, main, end = m.groups()
            s = f"{main[0].upper()}{main[1:]} {lead[0].lower()}{lead[1:]}{end}"
        out.append(s)
    return " ".join(out)


def reorder(text: str, rng: random.Random) -> str:
    sents = _SENT.split(text)
    if len(sents) < 4:
        return text
    middle = sents[1:-1]
    rng.shuffle(middle)
    return " ".join([sents[0], *middle, sents[-1]])


def rephrase(question: str, options: list[str], rng: random.Random) -> tuple[str, list[str]]:
    """The reworded question and its options (shuffled, each with synonyms and number formats edited)."""
    q = synonyms(numbers(reorder(move_clauses(question), rng)))
    opts = [synonyms(numbers(o)) for o in options]
    rng.shuffle(opts)
    return q, opts
