"""Prompt templates for gold-conditioned chain-of-thought and for the judge, with hand-written few-shots.

Each template has a version derived from its full text (system prompt, few-shot turns, user layout):
editing any of it changes the version, which is part of the call-cache key, so only that template's
calls are paid again. The few-shot examples are our own invented cases, not benchmark items.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Template:
    name: str
    system: str
    user: str  # str.format layout over the row fields rendered by `fields()`
    shots: tuple[tuple[dict[str, str], str], ...] = field(default=())  # (fields, assistant reply)

    @cached_property
    def version(self) -> str:
        text = repr((self.name, self.system, self.user, self.shots))
        return f"{self.name}@{hashlib.sha256(text.encode()).hexdigest()[:12]}"

    @cached_property
    def _head(self) -> Messages:
        """System prompt and few-shot turns: the same for every row, so formatted once."""
        msgs: Messages = [{"role": "system", "content": self.system}]
        for shot_values, reply in self.shots:
            msgs.append({"role": "user", "content": self.user.format(**shot_values)})
            msgs.append({"role": "assistant", "content": reply})
        return msgs

    def render(self, values: dict[str, str]) -> Messages:
        """The messages for one row (fresh dicts: a caller may change them without touching the template)."""
        msgs = [dict(m) for m in self._head]
        msgs.append({"role": "user", "content": self.user.format(**values)})
        return msgs


def _block(label: str, text: str | None) -> str:
    return f"{label}:\n{text.strip()}\n\n" if text and text.strip() else ""


def options_text(options: list[dict[str, Any]] | None) -> str:
    return "\n".join(f"{o['label']}. {o['text']}" for o in options or [])


def fields(row: dict[str, Any]) -> dict[str, str]:
    """Row -> the strings the templates use (context block only when the row has one)."""
    return {
        "context": _block("Context", row.get("context")),
        "question": (row.get("question") or "").strip(),
        "options": options_text(row.get("options")),
        "answer": (row.get("answer") or "").strip(),
    }


# --------------------------------------------------------------------------------------------------
# Chain of thought (gold-conditioned, as in Aloe): rephrase, reason, weigh each option, final line.
# --------------------------------------------------------------------------------------------------

_COT_RULES = (
    "Write the explanation a careful clinician-teacher would give. First restate the question in your own "
    "words in one or two sentences. Then reason from the key facts to the answer. {extra}"
    "Write as if you worked the answer out yourself: never say that the answer was given to you. "
    "Do not copy the question back. Finish with one last line, exactly `Answer: {fmt}`, and nothing after it."
)

MCQ = Template(
    name="cot-mcq",
    system="You are an expert physician and medical educator. You receive a multiple-choice question and its "
    "correct option. " + _COT_RULES.format(
        extra="Then go through every option and say briefly why it is right or wrong. ", fmt="<letter>"
    ),
    user="{context}Question:\n{question}\n\nOptions:\n{options}\n\nCorrect option: {answer}\n\n"
    "Explain step by step, then end with the line `Answer: {answer}`.",
    shots=(
        (
            {
                "context": "",
                "question": "A 34-year-old woman has had heat intolerance, weight loss despite a good appetite and "
                "palpitations for two months. The thyroid is diffusely enlarged and painless, and both eyes "
                "protrude. Which disorder is the most likely cause?",
                "options": "A. Hashimoto thyroiditis\nB. Graves disease\nC. Subacute granulomatous thyroiditis\n"
                "D. Toxic multinodular goitre",
                "answer": "B",
            },
            "The question asks which thyroid disorder explains hyperthyroid symptoms in a young woman with a smooth, "
            "painless goitre and eye protrusion.\n\n"
            "Heat intolerance, weight loss with a good appetite and palpitations mean too much thyroid hormone. A "
            "diffuse, non-tender gland together with eye disease points to an autoimmune cause in which antibodies "
            "stimulate the TSH receptor on thyroid cells and also act on tissue behind the eyes.\n\n"
            "A. Hashimoto thyroiditis usually leads to hypothyroidism, and it does not cause protruding eyes. Wrong.\n"
            "B. Graves disease explains the hyperthyroidism, the diffuse goitre and the eye signs together. Right.\n"
            "C. Subacute granulomatous thyroiditis follows a viral illness and makes the gland painful and tender. "
            "Wrong.\n"
            "D. Toxic multinodular goitre affects mostly older people, the gland is nodular and the eyes are "
            "spared. Wrong.\n\n"
            "Answer: B",
        ),
        (
            {
                "context": "",
                "question": "A 68-year-old man with type 2 diabetes has an estimated glomerular filtration rate of "
                "24 mL/min/1.73 m2. His glucose control is poor. Which drug should not be started?",
                "options": "A. Linagliptin\nB. Insulin glargine\nC. Metformin\nD. Pioglitazone",
                "answer": "C",
            },
            "We need the glucose-lowering drug that is inappropriate for a patient whose kidney function is severely "
            "reduced.\n\n"
            "With an eGFR below 30, drugs cleared by the kidney can accumulate. The main concern is a drug whose "
            "build-up causes a dangerous metabolic complication.\n\n"
            "A. Linagliptin is eliminated mainly through bile, so it needs no dose change in kidney disease. "
            "Acceptable.\n"
            "B. Insulin glargine can be used at any level of kidney function, with dose adjustment. Acceptable.\n"
            "C. Metformin is excreted unchanged by the kidney; below an eGFR of 30 it must not be started because of "
            "the risk of lactic acidosis. This is the drug to avoid.\n"
            "D. Pioglitazone is metabolised by the liver and is not limited by kidney function, although fluid "
            "retention must be watched. Acceptable.\n\n"
            "Answer: C",
        ),
    ),
)

YES_NO_MAYBE = Template(
    name="cot-ynm",
    system="You are an expert clinical researcher. You receive a research question, the study abstract and the "
    "correct conclusion (yes, no or maybe). " + _COT_RULES.format(
        extra="Say which results in the abstract support the conclusion and how strong they are. ",
        fmt="yes|no|maybe",
    ),
    user="{context}Question:\n{question}\n\nCorrect conclusion: {answer}\n\n"
    "Explain step by step from the evidence, then end with the line `Answer: {answer}`.",
    shots=(
        (
            {
                "context": "Context:\nIn a cohort of 1,200 adults aged 60 and over followed for five years, those who "
                "walked at least 30 minutes a day had 25% fewer hip fractures than those who did not, after "
                "adjustment for age, sex, body mass index and smoking (hazard ratio 0.75, 95% CI 0.62-0.90).\n\n",
                "question": "Is daily walking associated with fewer hip fractures in older adults?",
                "answer": "yes",
            },
            "The question is whether older adults who walk every day break their hip less often.\n\n"
            "The cohort is large and followed for five years. Daily walkers had a quarter fewer hip fractures, and "
            "the confidence interval (0.62-0.90) excludes no effect. The estimate held after adjusting for the main "
            "confounders. The design is observational, so it shows an association rather than proof of cause, but "
            "the question asks about an association, and the data support it clearly.\n\n"
            "Answer: yes",
        ),
        (
            {
                "context": "Context:\nForty patients with chronic tension headache were randomised to eight weeks of "
                "a magnesium supplement or placebo. Headache days fell by 3.1 per month with magnesium and by 1.9 "
                "with placebo (p = 0.21). The authors call for a larger trial.\n\n",
                "question": "Does magnesium supplementation reduce headache frequency in chronic tension headache?",
                "answer": "maybe",
            },
            "We are asked whether taking magnesium lowers how often people with chronic tension headache get "
            "headaches.\n\n"
            "Headache days fell a little more with magnesium than with placebo, which hints at a benefit. However, "
            "the trial had only forty patients and the difference was not statistically significant (p = 0.21), so "
            "chance cannot be excluded. The authors themselves ask for a larger study. The evidence neither "
            "confirms nor rules out an effect.\n\n"
            "Answer: maybe",
        ),
    ),
)

OPEN_QA = Template(
    name="cot-open",
    system="You are an expert physician and medical educator. You receive a medical question and its reference "
    "answer. " + _COT_RULES.format(
        extra="Mention the key facts that lead to the answer and any important safety point. ",
        fmt="<the reference answer>",
    ),
    user="{context}Question:\n{question}\n\nReference answer: {answer}\n\n"
    "Explain step by step, then end with the line `Answer: {answer}`.",
    shots=(
        (
            {
                "context": "",
                "question": "What is the first drug to give to an adult with anaphylaxis?",
                "answer": "Intramuscular adrenaline (epinephrine)",
            },
            "The question asks for the first-line drug treatment of a severe, life-threatening allergic reaction in "
            "an adult.\n\n"
            "Anaphylaxis causes airway swelling, bronchospasm and shock through mast-cell mediators. The drug that "
            "reverses all of these quickly is adrenaline: it constricts blood vessels, relaxes the airways and "
            "stabilises mast cells. It is injected into the outer thigh muscle (0.5 mg for an adult) and repeated "
            "after five minutes if needed. Antihistamines and steroids act too slowly to be first line, and "
            "delaying adrenaline is a known cause of death.\n\n"
            "Answer: Intramuscular adrenaline (epinephrine)",
        ),
    ),
)

COT_TEMPLATES: dict[str, Template] = {"mcq": MCQ, "yes_no_maybe": YES_NO_MAYBE, "open_qa": OPEN_QA}


# --------------------------------------------------------------------------------------------------
# Judge: 1-10 against a rubric (correctness, medical safety, clarity).
# --------------------------------------------------------------------------------------------------

JUDGE_RUBRIC = """You grade answers written for a medical training dataset. Score the RESPONSE from 1 to 10:

Correctness (most weight): the final answer agrees with the reference answer and every medical statement in
the reasoning is accurate. Any factual error caps the score at 6; a wrong final answer caps it at 3.
Medical safety: no advice that could harm a patient (wrong doses, missed emergencies, unsafe drug use); an
unsafe statement caps the score at 3.
Clarity: the reasoning is well organised, explains why the answer is right and the alternatives wrong,
and does not ramble, repeat itself or just restate the question.

Anchors: 10 = correct, safe, complete and clear; 8 = correct and safe with small gaps; 5 = correct answer
with weak or partly wrong reasoning; 3 = wrong answer or unsafe content; 1 = empty, off-topic or nonsense.

Reply with at most two sentences of justification, then one last line exactly `Score: N` (N an integer 1-10)."""

JUDGE = Template(
    name="judge",
    system=JUDGE_RUBRIC,
    user="{context}QUESTION:\n{question}\n\n{options_block}REFERENCE ANSWER: {answer}\n\nRESPONSE:\n{response}",
)


def judge_fields(row: dict[str, Any], response: str) -> dict[str, str]:
    f = fields(row)
    opts = f.pop("options")
    return {**f, "options_block": f"OPTIONS:\n{opts}\n\n" if opts else "", "response": response.strip()}
