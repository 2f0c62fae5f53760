"""Steps register through an explicit list (curate's own) and entry points (other packages, synth's teacher
steps), never by the curate core importing synth; a plugin that fails to import does not break the others."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
import pkgutil

import pytest

import curate.steps as steps
from curate.steps.base import Step


def test_every_step_module_of_curate_is_in_the_builtin_list() -> None:
    listed = {v.split(":")[0] + ":" + v.split(":")[1] for v in steps.BUILTIN.values()}
    found = set()
    for mod in pkgutil.iter_modules(steps.__path__):
        if mod.name.startswith("_") or mod.name == "base":
            continue
        module = importlib.import_module(f"curate.steps.{mod.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Step) and cls is not Step and cls.__module__ == module.__name__:
                found.add(f"{module.__name__}:{cls.__name__}")
    assert found == listed


def test_synth_steps_come_from_entry_points_and_a_broken_plugin_is_skipped(monkeypatch, caplog) -> None:
    declared = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=steps.ENTRY_POINT_GROUP)}
    assert {"cot", "judge", "preference", "decontaminate_rephrase", "score"} <= set(declared)
    assert all(v.startswith("synth.steps.") for v in declared.values())
    broken = importlib.metadata.EntryPoint(name="broken", value="no_such_package.steps:Broken",
                                           group=steps.ENTRY_POINT_GROUP)
    real = importlib.metadata.entry_points(group=steps.ENTRY_POINT_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [broken, *real])
    monkeypatch.setattr(steps, "_REGISTRY", {})
    monkeypatch.setattr(steps, "_discovered", False)
    with caplog.at_level(logging.WARNING, logger="medcurate.steps"):
        names = steps.step_names()
    assert "broken" not in names and {"cot", "score", "dedup"} <= set(names)
    assert any("'broken'" in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records)
    with pytest.raises(KeyError, match="unknown step 'broken'"):
        steps.get_step("broken")


def test_the_curate_core_never_imports_synth() -> None:
    import ast
    from pathlib import Path

    root = Path(steps.__file__).resolve().parents[1]
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(root)}: {n}" for n in names if n.split(".")[0] == "synth"]
    assert offenders == [], offenders
