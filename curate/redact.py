"""Redact credentials from free text before it is written anywhere (reject details, reports, logs).

Structured data (manifests, cards) is redacted by key in `curate.card.redact`; this module handles text a
third party wrote, such as a teacher server's error body that echoes the request's `Authorization` header
(issue 10). Known secret values are replaced first, then anything shaped like a credential.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"

_PATTERNS = [
    # Authorization: Bearer <token> / Basic <b64>
    (re.compile(r"(?i)\b(bearer|basic|token)(\s+)[A-Za-z0-9._~+/=-]{6,}"), rf"\1\2{MASK}"),
    # key=value / "key": "value" for credential-looking keys
    (re.compile(r"""(?i)((?:api[_-]?key|access[_-]?token|auth[_-]?token|token|secret|password|passwd|authorization|"""
                r"""x-api-key)["']?\s*[:=]\s*["']?)(?!\*\*\*|bearer\b|basic\b)[^\s"',;}&]+"""), rf"\1{MASK}"),
    # well-known token shapes: OpenAI-style sk-..., Hugging Face hf_..., GitHub ghp_..., AWS AKIA...
    (re.compile(r"\b(?:sk-[A-Za-z0-9_-]{8,}|hf_[A-Za-z0-9]{8,}|gh[pousr]_[A-Za-z0-9]{16,}|AKIA[0-9A-Z]{16})"), MASK),
    # credentials in URLs: scheme://user:pass@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), rf"\1{MASK}@"),
]


def redact_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with each of `secrets` (values of 6+ characters) and every credential-looking token masked."""
    for value in sorted((s for s in secrets if s and len(s) >= 6), key=len, reverse=True):
        text = text.replace(value, MASK)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def short_reason(text: str, limit: int = 160) -> str:
    """One line, at most `limit` characters: what an error detail may quote of a body."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
