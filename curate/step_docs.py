"""Each step's parameters for `curate steps`: name, type, default and description.

A description comes from the pydantic `Field(description=...)` when the step declares one, else from
the trailing `# comment` on the field's line in the Params class (most steps document their params
that way), so `curate steps` documents every step without each module repeating itself.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined, to_jsonable_python

from curate.steps import get_step, step_names

_FIELD_LINE = re.compile(r"^\s+(\w+)\s*:[^#]*#\s*(.+?)\s*$")


def _comments(model: type[BaseModel]) -> dict[str, str]:
    out: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            continue
        for line in source.splitlines():
            m = _FIELD_LINE.match(line)
            if m and not m.group(2).startswith(("noqa", "type:")):
                out[m.group(1)] = m.group(2)
    return out


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    return text or str(annotation).replace("typing.", "")


def step_params(name: str) -> list[dict[str, Any]]:
    """[{name, type, default, required, description}] for step `name`'s Params, in declaration order."""
    model = get_step(name).Params
    comments = _comments(model)
    out = []
    for field_name, info in model.model_fields.items():
        if info.default is not PydanticUndefined:
            default = info.default
        elif info.default_factory is not None:
            default = info.default_factory()  # type: ignore[call-arg]
        else:
            default = None
        default = to_jsonable_python(default)  # models, and containers of models (dedup's per_task)
        out.append({"name": field_name, "type": _type_name(info.annotation), "default": default,
                    "required": info.is_required(),
                    "description": info.description or comments.get(field_name, "")})
    return out


def steps_catalogue() -> list[dict[str, Any]]:
    """Every registered step with its scope, description and params."""
    out = []
    for n in step_names():
        cls = get_step(n)
        out.append({"name": n, "scope": cls.scope, "description": cls.description, "params": step_params(n)})
    return out
