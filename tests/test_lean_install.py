"""The core install stays lean: no torch / spaCy / benchmark-only packages in core, and none imported at runtime."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_ONLY = ("datatrove", "datasketch", "httpx", "spacy")
NEVER_CORE = ("torch", "spacy", "transformers", "vllm")


def _name(req: str) -> str:
    for sep in "[<>=!~; ":
        req = req.split(sep, 1)[0]
    return req.lower()


def test_core_dependencies_exclude_heavy_and_bench_only_packages() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_name(r) for r in project["dependencies"]}
    assert not core & {*BENCH_ONLY, *NEVER_CORE}, core
    assert {"ftfy", "matplotlib"} <= core
    extras = project["optional-dependencies"]
    assert {_name(r) for r in extras["bench"]} >= {"datatrove", "datasketch", "httpx"}
    assert any(r.startswith("medcurate[") and "bench" in r for r in extras["dev"])  # CI's benchmarks keep working


def test_runtime_modules_never_import_bench_only_packages() -> None:
    for path in [*ROOT.glob("curate/**/*.py"), *ROOT.glob("synth/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for n in names:
                assert n.split(".")[0] not in BENCH_ONLY, f"{path.relative_to(ROOT)} imports {n}"
    code = ("import sys, curate, curate.build, curate.cli, curate.api, synth.runner, curate.report_html\n"
            "curate.steps.step_names()\n"
            f"print(sorted(m for m in {BENCH_ONLY + NEVER_CORE!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
