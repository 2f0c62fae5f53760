"""The teacher client's two failures: one worth retrying, and one that is final."""

from __future__ import annotations


class RetryableError(Exception):
    """A failed attempt worth another one (429/5xx, connection, timeout, truncated, stalled or invalid body).
    `reason` keys the client's error counters; `wait`: the server's Retry-After in seconds, when it sent one."""

    def __init__(self, reason: str, detail: str, wait: float | None = None):
        self.reason, self.detail, self.wait = reason, detail, wait
        super().__init__(detail)


class TeacherError(Exception):
    """A call that failed for good (retries exhausted or a non-retryable answer)."""

    def __init__(self, detail: str, attempts: int, reason: str = "http_4xx"):
        self.detail = detail
        self.attempts = attempts
        self.reason = reason
        super().__init__(detail)

    def __str__(self) -> str:
        return f"{self.detail} (after {self.attempts} attempt{'s' if self.attempts != 1 else ''})"
