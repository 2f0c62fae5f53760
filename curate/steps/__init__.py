"""Step registry: one explicit list of curate's own steps, plus steps other packages declare as entry points.

curate's steps are named in `BUILTIN` (name -> "module:Class"); a package adds steps by declaring entry
points in the group `medcurate.steps` (medcurate's own `synth` steps are declared that way in pyproject, so
the curate core never names or imports `synth`). Steps are loaded on the first lookup; a step whose module
fails to import is reported with a warning and skipped, so one broken plugin cannot break the others.
`register(cls)` adds a step from Python (the API, tests).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging

from curate.steps.base import BuildContext, Step, StepParams, StepResult, no_rejects, reject, split_by

__all__ = [
    "BUILTIN", "ENTRY_POINT_GROUP", "BuildContext", "Step", "StepParams", "StepResult", "get_step", "no_rejects",
    "register", "reject", "split_by", "step_names",
]

log = logging.getLogger("medcurate.steps")

#: curate's own steps: name -> "module:Class".
BUILTIN: dict[str, str] = {
    "attack": "curate.steps.attack:Attack",
    "clean": "curate.steps.clean:Clean",
    "decontaminate": "curate.steps.decontaminate:Decontaminate",
    "dedup": "curate.steps.dedup:Dedup",
    "filter": "curate.steps.filter:Filter",
    "holdout": "curate.steps.holdout:Holdout",
    "langid": "curate.steps.langid:Langid",
    "mix": "curate.steps.mix:Mix",
    "normalize": "curate.steps.normalize:Normalize",
    "template": "curate.steps.template:Template",
    "validate": "curate.steps.validate:Validate",
}
ENTRY_POINT_GROUP = "medcurate.steps"

_REGISTRY: dict[str, type[Step]] = {}
_discovered = False


def register(cls: type[Step]) -> type[Step]:
    """Make a step available to recipes under `cls.name` (also usable as a class decorator)."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"step name {cls.name!r} registered twice ({_REGISTRY[cls.name]} and {cls})")
    _REGISTRY[cls.name] = cls
    return cls


def _load(name: str, target: str) -> None:
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if cls.name != name:
        raise ValueError(f"step {target} is named {cls.name!r}, listed as {name!r}")
    register(cls)


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    for name, target in BUILTIN.items():
        _load(name, target)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            _load(ep.name, ep.value)
        except Exception as err:  # noqa: BLE001 - a broken plugin is reported, the others still load
            log.warning("step %r (%s) could not be loaded and is skipped: %s", ep.name, ep.value, err)


def get_step(name: str) -> type[Step]:
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown step {name!r}; known steps: {', '.join(sorted(_REGISTRY))}") from None


def step_names() -> list[str]:
    _discover()
    return sorted(_REGISTRY)
