"""Endpoint choice shared by every teacher client of a build, wherever the clients run.

One `TeacherClient` already sends each request to its least-loaded endpoint, but it only sees its own
requests. Under `--executor ray` many actors each hold a client; the executor installs a shared load
table (`set_shared_load`, a Ray actor behind this protocol) so every request goes to the endpoint with
the fewest requests in flight over all actors. With nothing installed clients balance on their own.
"""

from __future__ import annotations

from typing import Protocol


class SharedLoad(Protocol):
    async def acquire(self, n_endpoints: int) -> int: ...  # index of the endpoint to use; counts it in flight

    def release(self, n_endpoints: int, index: int) -> None: ...


_shared: SharedLoad | None = None


def set_shared_load(load: SharedLoad | None) -> None:
    global _shared
    _shared = load


def shared_load() -> SharedLoad | None:
    return _shared


class LoadTable:
    """In-flight counts per endpoint; the least-loaded endpoint wins, ties go to the lowest index after
    a rotating start so equal loads spread (what `TeacherClient._pick` does for one client)."""

    def __init__(self) -> None:
        self.inflight: list[int] = []
        self.turn = 0

    def acquire(self, n_endpoints: int) -> int:
        if len(self.inflight) != n_endpoints:
            self.inflight = [0] * n_endpoints
        start, self.turn = self.turn % n_endpoints, self.turn + 1
        order = [(start + k) % n_endpoints for k in range(n_endpoints)]
        i = min(order, key=lambda j: self.inflight[j])
        self.inflight[i] += 1
        return i

    def release(self, n_endpoints: int, index: int) -> None:
        if len(self.inflight) == n_endpoints and self.inflight[index] > 0:
            self.inflight[index] -= 1

    def snapshot(self) -> list[int]:
        return list(self.inflight)
