"""The contamination judge's prompt: is this training item the same question as that benchmark item, reworded?

After Yang et al. 2023 ("Rethinking benchmark and contamination for language models with rephrased
samples"), as used by Aloe Beta: the judge sees the training item and one retrieved benchmark item and
answers with a final line `Verdict: same` or `Verdict: different`. The few-shot cases are our own invented
questions, not benchmark items. Same means: the same case and the same thing asked, whatever the wording,
sentence order, number format or option order; a different question on the same topic is different.
"""

from __future__ import annotations

import re
from typing import Any

from synth.prompts import Template, options_text

VERDICT = re.compile(r"verdict\s*[:=]\s*\**\s*(same|different)\b", re.IGNORECASE)

REPHRASE_JUDGE = Template(
    name="rephrase-judge",
    system=(
        "You check training data for benchmark contamination. You receive a TRAINING item and a BENCHMARK "
        "item. Decide whether the training item is the benchmark question itself, possibly reworded: the same "
        "case or scenario and the same thing asked, even if words were swapped for synonyms, sentences or "
        "clauses reordered, numbers or units written differently, or the options shuffled or reworded. Two "
        "different questions on the same topic, or the same vignette asking something else, are different. "
        "Reason in at most three sentences, then end with one line, exactly `Verdict: same` or "
        "`Verdict: different`, and nothing after it."
    ),
    user="TRAINING item:\n{train}\n\nBENCHMARK item:\n{bench}\n\nSame question, reworded?",
    shots=(
        (
            {"train": "A male aged 52 years comes in with crushing chest discomfort of 2 hrs. BP is 90/60 "
                      "mmHg. ECG shows ST elevation in leads II, III and aVF. What is the next best step?\n"
                      "A. Aspirin and urgent reperfusion\nB. Discharge home\nC. Stress test\nD. Antacids",
             "bench": "A 52-year-old man presents with 2 hours of crushing chest pain. His blood pressure is "
                      "90/60 mm Hg. An ECG shows ST elevations in II, III and aVF. Which is the most "
                      "appropriate next step?\nA. Exercise stress test\nB. Antacid therapy\nC. Aspirin and "
                      "emergency reperfusion\nD. Discharge"},
            "Same patient, same findings and the same question about the next step; only wording, number "
            "format and option order differ.\nVerdict: same",
        ),
        (
            {"train": "A 52-year-old man presents with 2 hours of crushing chest pain and ST elevation in II, "
                      "III and aVF. Which coronary artery is most likely occluded?\nA. Right coronary artery\n"
                      "B. Left anterior descending\nC. Left circumflex\nD. Left main",
             "bench": "A 52-year-old man presents with 2 hours of crushing chest pain. An ECG shows ST "
                      "elevations in II, III and aVF. Which is the most appropriate next step?\nA. Exercise "
                      "stress test\nB. Antacid therapy\nC. Aspirin and emergency reperfusion\nD. Discharge"},
            "The vignette is similar but the training item asks for the occluded artery, the benchmark item "
            "for the next step in management.\nVerdict: different",
        ),
    ),
)


def item_block(row: dict[str, Any]) -> str:
    """Question (and its context for PubMedQA-style items) plus lettered options; yes/no/maybe left out."""
    parts = []
    if row.get("context") and row.get("task") == "yes_no_maybe":
        parts.append(f"Context: {row['context'].strip()[:800]}")
    parts.append((row.get("question") or "").strip())
    if row.get("task") != "yes_no_maybe" and row.get("options"):
        parts.append(options_text(row["options"]))
    return "\n".join(parts)


def parse_verdict(text: str) -> str | None:
    """`same` / `different` from the judge's last verdict line; None when it gives none."""
    found = VERDICT.findall(text or "")
    return found[-1].lower() if found else None
