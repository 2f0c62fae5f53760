"""Zero-shot evaluation through lm-eval (EleutherAI's harness, as the Open Medical LLM Leaderboard used).

The task configs are ours (`lm_eval_tasks/`, generative, scored by synth's answer parser); the model is
lm-eval's: `local-chat-completions` (see `_register_chat_backend`) for a served model (vLLM, `transformers serve`, hosted) or `hf` for a
local checkpoint. Greedy decoding and the model's chat template (mode `generate`), or the log-likelihood
of each answer label after `Answer:` without a chat template (mode `loglikelihood`, checkpoints only: the
Open Medical LLM Leaderboard's scoring; a random tiny model scores near chance this way (0.35 over 180
questions), where its generations parse to no answer and score ~0). lm-eval's response cache
(`use_cache`: a sqlite file per model, committed per response) makes a second run pay for no call and
lets a killed run resume where it stopped.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from curate.errors import InputError
from train.evaluation.config import EvalRunConfig

TASKS_DIR = Path(__file__).parent / "lm_eval_tasks"
TASK_PREFIX = {"generate": "medcurate_", "loglikelihood": "medcurate_mc_"}


def model_identity(cfg: EvalRunConfig) -> str:
    """What the response cache is keyed on (lm-eval keys responses by request only, so one file per model):
    the served name, or the checkpoint's weight files (path, size, mtime)."""
    if cfg.checkpoint is None:
        return f"served:{cfg.model}"
    root = Path(cfg.checkpoint).resolve()
    files = sorted(root.glob("*.safetensors")) + sorted(root.glob("*.bin"))
    return "hf:" + "|".join(f"{f}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)


CHAT_BACKEND = "medcurate-chat-completions"


def _register_chat_backend() -> None:
    """lm-eval's `local-chat-completions`, minus an empty ``"stop": []`` in the request body: our tasks stop
    only at the end of the answer (``until: []``), and `transformers serve` answers an empty stop list with
    HTTP 500 (its StopStringCriteria rejects it), where vLLM ignores it."""
    from lm_eval.api.registry import MODEL_REGISTRY, register_model
    from lm_eval.models.openai_completions import LocalChatCompletion

    if CHAT_BACKEND in MODEL_REGISTRY:
        return

    @register_model(CHAT_BACKEND)
    class _Chat(LocalChatCompletion):
        def __init__(self, *args: Any, api_key_env: str | None = None, **kwargs: Any):
            self._api_key_env = api_key_env
            super().__init__(*args, **kwargs)

        @property
        def api_key(self) -> str:
            """The key from the variable the config names (never $OPENAI_API_KEY by accident; never logged)."""
            return os.environ.get(self._api_key_env, "") if self._api_key_env else ""

        def _create_payload(self, *args: Any, **kwargs: Any) -> dict:
            payload = super()._create_payload(*args, **kwargs)
            if not payload.get("stop"):
                payload.pop("stop", None)
            return payload


def _model_args(cfg: EvalRunConfig) -> tuple[str, dict[str, Any]]:
    if cfg.checkpoint is not None:
        if not Path(cfg.checkpoint).is_dir():
            raise InputError(f"checkpoint not found: {cfg.checkpoint}",
                             hint="pass the output_dir of `train sft|merge|dpo` with --checkpoint PATH")
        return "hf", {"pretrained": cfg.checkpoint, "device": cfg.device, "dtype": "float32",
                      "max_length": 2048}
    args: dict[str, Any] = {"base_url": f"{cfg.base_url.rstrip('/')}/chat/completions", "model": cfg.model,
                            "num_concurrent": cfg.concurrency, "max_retries": 6, "tokenized_requests": False,
                            "max_gen_toks": cfg.max_tokens, "api_key_env": cfg.api_key_env}
    _register_chat_backend()
    return CHAT_BACKEND, args


def run_zero_shot(cfg: EvalRunConfig, cache_dir: Path) -> dict[str, dict[str, Any]]:
    """{benchmark: {"accuracy", "stderr", "questions", "correct"}} from one lm-eval run over all benchmarks."""
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise InputError("`train eval` needs lm-eval", hint="pip install 'medcurate[eval]'") from None
    logging.getLogger("lm-eval").setLevel(logging.WARNING)
    if cfg.api_key_env and not os.environ.get(cfg.api_key_env):
        raise InputError(f"environment variable {cfg.api_key_env} (api_key_env) is not set",
                         hint=f"export {cfg.api_key_env}=... or remove `api_key_env` for a local server")
    backend, model_args = _model_args(cfg)
    digest = hashlib.sha256(model_identity(cfg).encode()).hexdigest()[:16]
    cache_dir.mkdir(parents=True, exist_ok=True)
    tasks = [TASK_PREFIX[cfg.mode] + b for b in cfg.benchmarks]
    generate = cfg.mode == "generate"
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False,
                          metadata={"benchmark_root": cfg.benchmark_root})
    out = lm_eval.simple_evaluate(
        model=backend, model_args=model_args, tasks=tasks, task_manager=manager, limit=cfg.limit,
        use_cache=str(cache_dir / f"lm-eval-{digest}"), apply_chat_template=generate,
        system_instruction=cfg.system_prompt if generate else None,
        gen_kwargs={"max_gen_toks": cfg.max_tokens} if generate else None,
        batch_size=1, log_samples=False, bootstrap_iters=0, random_seed=cfg.seed,
        numpy_random_seed=cfg.seed, torch_random_seed=cfg.seed, fewshot_random_seed=cfg.seed,
    )
    scores: dict[str, dict[str, Any]] = {}
    for bench, task in zip(cfg.benchmarks, tasks, strict=True):
        res = out["results"][task]
        n = int(out["n-samples"][task]["effective"])
        acc = float(res["acc,none"])
        stderr = res.get("acc_stderr,none")
        scores[bench] = {"accuracy": acc, "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
                         "questions": n, "correct": round(acc * n)}
    return scores
