"""Prompts of the DEITA-style `score` step: instruction complexity and response quality, each 1-6.

DEITA (Liu et al. 2024, github hkust-nlp/deita) asks its fine-tuned scorers for one rating token and reads
the probabilities of the tokens "1".."6" at that position. We keep that method with our own wording, for any
instruction-following model behind the teacher API: the reply must START with the digit, so the first
generated token carries the distribution the score is computed from (`synth.steps.score`).
"""

from __future__ import annotations

import math
import re
from typing import Any

from synth.prompts import Template

RATINGS = ("1", "2", "3", "4", "5", "6")

COMPLEXITY = Template(
    name="score-complexity",
    system=(
        "You rate how complex an instruction is to answer well, on a scale from 1 to 6: 1 = trivial recall "
        "or a one-step task; 3 = needs several facts combined or a short chain of reasoning; 6 = needs deep "
        "expertise and long multi-step reasoning over many constraints. Reply with the single digit only."
    ),
    user="Instruction:\n{instruction}\n\nComplexity (1-6):",
)

QUALITY = Template(
    name="score-quality",
    system=(
        "You rate the quality of a response to an instruction on a scale from 1 to 6: 1 = wrong, unsafe or "
        "unhelpful; 3 = correct but thin or poorly explained; 6 = correct, complete, well reasoned, safe and "
        "clearly written. Reply with the single digit only."
    ),
    user="Instruction:\n{instruction}\n\nResponse:\n{response}\n\nQuality (1-6):",
)


def weighted_rating(logprobs: Any) -> float | None:
    """The probability-weighted mean rating at the first generated token (DEITA's method): softmax of the
    log-probabilities of the tokens "1".."6" found among that position's `top_logprobs` (a token's
    surrounding spaces ignored; repeated spellings of one digit add up), times 1..6, summed. None when the
    response carries no logprobs or no rating token is among the top alternatives."""
    try:
        first = (logprobs or {}).get("content")[0]
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    cands = list(first.get("top_logprobs") or []) or [first]
    mass: dict[int, float] = {}
    for c in cands:
        tok, lp = str(c.get("token", "")).strip(), c.get("logprob")
        if tok in RATINGS and isinstance(lp, int | float) and math.isfinite(lp):
            mass[int(tok)] = mass.get(int(tok), 0.0) + math.exp(lp)
    total = sum(mass.values())
    if not mass or total <= 0:
        return None
    return sum(r * p for r, p in mass.items()) / total


_DIGIT = re.compile(r"(?<![\d.])([1-6])(?![\d.])")


def parsed_rating(text: str) -> float | None:
    """The first standalone digit 1-6 in the reply (servers without logprobs)."""
    m = _DIGIT.search(text or "")
    return float(m.group(1)) if m else None
