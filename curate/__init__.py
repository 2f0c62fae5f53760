"""medcurate: curate medical QA data into versioned instruction datasets."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

#: The Python API (see curate/api.py), imported on first use so `import curate` stays light.
#: `curate.build` is the module curate/build.py, made callable as `curate.api.build` (see there).
_API = {"Recipe": "curate.recipe", "run_step": "curate.api",
        "BuildOutput": "curate.api", "StepOutput": "curate.api"}
__all__ = ["BuildOutput", "Recipe", "StepOutput", "__version__", "build", "load", "run_step"]


def __getattr__(name: str) -> Any:
    if name == "build":
        import importlib

        return importlib.import_module("curate.build")
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'curate' has no attribute {name!r}")


def load(ref: str, **kwargs: Any):
    """Load a published dataset version, e.g. ``curate.load("org/name@v1.2.0")`` -> ``datasets.DatasetDict``."""
    from curate.registry import load as _load

    return _load(ref, **kwargs)
