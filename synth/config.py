"""Teacher profiles (recipes/teachers/*.yaml, inline in a recipe, or CLI flags). The API key only from env.

A profile says where the teacher is (one or more OpenAI-compatible base URLs), which model to ask for,
how hard to push it (concurrency, timeout, retries) and which vLLM-specific options to pass through.
It never holds a secret: `api_key_env` names the environment variable that holds the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from curate.errors import RecipeError
from curate.resources import recipes_dir

DEFAULT_PROFILE = "vllm-local"


class TeacherProfile(BaseModel):
    """Where the teacher is and how to call it."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="model name sent in each request (vLLM: the served model name)")
    urls: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8000/v1"], min_length=1)
    api_key_env: str | None = Field(default=None, description="env var holding the API key (never the key)")
    max_concurrency: int = Field(default=256, gt=0, description="requests in flight over all endpoints")
    timeout_s: float = Field(default=600.0, gt=0, description="per-request timeout")
    connect_timeout_s: float = Field(default=10.0, gt=0)
    read_timeout_s: float = Field(default=60.0, gt=0, description=(
        "max seconds between two reads of a response body once it has started (a stalled or trickling server); "
        "the wait for the first byte is bounded by timeout_s, so long generations are not cut"))
    max_response_bytes: int = Field(default=16 << 20, gt=0, description=(
        "largest response body accepted (16 MiB: ~100x a 4k-token completion with n=8); larger is a failure"))
    max_retries: int = Field(default=6, ge=0, description="retries after the first try (429/5xx/network/bad body)")
    backoff_base_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)
    retry_after_max_s: float = Field(default=120.0, ge=0, description="cap on a server's Retry-After")
    balance: Literal["least_loaded", "round_robin"] = "least_loaded"
    transport: Literal["auto", "pyreqwest", "aiohttp"] = Field(default="auto", description=(
        "HTTP client: pyreqwest (Rust, HTTP outside the GIL; ~3x fewer event-loop microseconds a request) or "
        "aiohttp; auto: pyreqwest when installed, else aiohttp (synth/transport.py)"))
    transport_process: Literal["auto", "always", "never"] = Field(default="auto", description=(
        "run the HTTP transport in a helper process, so the event-loop thread does no HTTP work "
        "(synth/transport_helper.py): auto for clients that expect at least 256 calls, always, or never"))
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="passed through in every request body (vLLM: guided_choice, top_k, ...)"
    )

    @field_validator("urls", mode="before")
    @classmethod
    def _urls(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [u.strip() for u in value.split(",") if u.strip()]
        return value

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, value: list[str]) -> list[str]:
        out = []
        for u in value:
            if not u.startswith(("http://", "https://")):
                raise ValueError(f"teacher url {u!r} must start with http:// or https:// (e.g. http://127.0.0.1:8000/v1)")
            out.append(u.rstrip("/"))
        return out

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and (not value.replace("_", "").isalnum() or value[0].isdigit()):
            raise ValueError(
                f"api_key_env must be the NAME of an environment variable (like OPENAI_API_KEY), not {value[:4]!r}…"
            )
        return value

    @field_validator("extra_body")
    @classmethod
    def _no_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in value if any(w in k.lower() for w in ("key", "token", "secret", "authorization", "password"))]
        if bad:
            raise ValueError(
                f"extra_body keys {bad} look like credentials, which must not be written into recipes or manifests; "
                "put the key in an environment variable and name it in `api_key_env`"
            )
        return value

    def api_key(self) -> str | None:
        """The key from the environment (None when the profile names no variable)."""
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise RecipeError(
                f"teacher profile needs an API key in environment variable {self.api_key_env}, which is not set",
                hint=f"export {self.api_key_env}=... (or remove `api_key_env` for a local vLLM server)",
            )
        return key

    def public(self) -> dict[str, Any]:
        """What may go into logs and manifests: no key, no URL credentials or query strings."""
        return {"model": self.model, "endpoints": len(self.urls)}


def _teacher_dirs() -> list[Path]:
    return [Path.cwd() / "recipes" / "teachers", recipes_dir() / "teachers"]


def list_teachers() -> list[str]:
    names: set[str] = set()
    for d in _teacher_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def load_profile_file(name_or_path: str) -> dict[str, Any]:
    """A profile by name (recipes/teachers/NAME.yaml, cwd first) or by .yaml path, as a dict."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        candidates = [p]
    else:
        candidates = [d / f"{name_or_path}.yaml" for d in _teacher_dirs()]
    for cand in candidates:
        if cand.is_file():
            try:
                data = yaml.safe_load(cand.read_text(encoding="utf-8"))
            except yaml.YAMLError as err:
                raise RecipeError(f"{cand}: not valid YAML: {err}") from None
            if not isinstance(data, dict):
                raise RecipeError(f"{cand}: a teacher profile must be a YAML mapping (model:, urls:, ...)")
            return data
    raise RecipeError(
        f"no teacher profile named {name_or_path!r}",
        hint=f"known profiles: {', '.join(list_teachers()) or 'none'}; or write recipes/teachers/{name_or_path}.yaml",
    )


_OVERRIDE_KEYS = {"teacher_url": "urls", "teacher_model": "model", "url": "urls", "teacher_timeout": "timeout_s"}
#: Build options (CLI flags) that override the teacher profile of every teacher step.
CLI_OVERRIDES = ("teacher_url", "teacher_model", "teacher_timeout")


def resolve_teacher(ref: str | dict[str, Any] | None, overrides: dict[str, Any] | None = None) -> TeacherProfile:
    """Profile name, inline dict or None (the default `vllm-local`), plus CLI overrides -> TeacherProfile.

    An inline dict may name a base profile with `profile: NAME` and override some of its keys.
    `overrides` accepts the CLI keys `teacher_url` (comma-separated for several endpoints) and
    `teacher_model`, or profile keys; None values are ignored.
    """
    if ref is None:
        data: dict[str, Any] = load_profile_file(DEFAULT_PROFILE)
    elif isinstance(ref, str):
        data = load_profile_file(ref)
    elif isinstance(ref, dict):
        inline = dict(ref)
        base = inline.pop("profile", None)
        data = {**(load_profile_file(base) if base else {}), **inline}
    else:
        raise RecipeError(f"`teacher` must be a profile name or a mapping, got {type(ref).__name__}")
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        data[_OVERRIDE_KEYS.get(key, key)] = value
    return TeacherProfile.model_validate(data)
