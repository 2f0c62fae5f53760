"""The `train eval` config (recipes/train/eval-*.yaml), validated like the other training configs.

Exactly one model: a served one (``base_url`` + ``model``, any OpenAI-compatible server) or a local
``checkpoint`` (a `train sft|merge|dpo` output, run through lm-eval's transformers backend).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from train.config import CONFIG_TYPES, _Strict

MMLU_MEDICAL = ("anatomy", "clinical_knowledge", "college_biology", "college_medicine", "medical_genetics",
                "professional_medicine")
# MultiMedQA as Aloe reports it: MedQA 4-option test, MedMCQA dev, PubMedQA PQA-L test, six MMLU subjects
MULTIMEDQA = ("medqa_test", "medmcqa_dev", "pubmedqa_test", *(f"mmlu_{s}_test" for s in MMLU_MEDICAL))
KNOWN_SETS = (*MULTIMEDQA, "headqa_test")  # medmcqa_test has no public labels

Scheme = Literal["zero-shot", "sc-cot", "medprompt"]


class SCCoTParams(_Strict):
    """Self-consistency CoT: ``samples`` sampled answers per question, majority vote over parsed answers."""

    samples: int = Field(default=5, gt=0)
    temperature: float = Field(default=0.7, ge=0)


class MedpromptParams(_Strict):
    """Medprompt: ``k`` nearest CoT examples (bm25s over question text) from ``dataset`` (a tag or build
    folder with `question`, `options`, `answer`, `cot`), ``ensembles`` calls with options shuffled, vote."""

    dataset: str | None = None
    split: str = "train"
    k: int = Field(default=5, ge=0)
    ensembles: int = Field(default=5, gt=0)
    temperature: float = Field(default=0.0, ge=0)


class EvalRunConfig(_Strict):
    name: str | None = None  # label in eval.json and `train compare`; default: the model's name
    base_url: str | None = None  # served model: OpenAI-compatible base URL (.../v1)
    # served model name. Cached answers are keyed by it (as synth's teacher calls are): serve each model
    # under its own name, or give each its own `cache`, or a re-served model reuses the old answers
    model: str | None = None
    api_key_env: str | None = None  # env var holding the server's key (never the key)
    checkpoint: str | None = None  # local model folder (a train output), run on lm-eval's `hf` backend
    device: str = "cpu"  # for `checkpoint`
    lineage: str | None = None  # training output folder of a served model (its dataset versions)
    benchmarks: list[str] = Field(default_factory=lambda: list(MULTIMEDQA), min_length=1)
    benchmark_root: str | None = None  # folder laid out like ../shared/data when the pack is not installed
    scheme: Scheme = "zero-shot"
    # zero-shot only: `generate` (a completion scored by synth's parser) or `loglikelihood` (lm-eval
    # multiple_choice over the answer labels, the Open Medical LLM Leaderboard's way; local checkpoints)
    mode: Literal["generate", "loglikelihood"] = "generate"
    limit: int | None = Field(default=None, gt=0)  # first N questions of each benchmark
    max_tokens: int = Field(default=512, gt=0)
    system_prompt: str | None = None
    seed: int = 0
    concurrency: int = Field(default=32, gt=0)
    output_dir: str
    cache: str | None = None  # call-cache folder; default $MEDCURATE_TEACHER_CACHE's folder or output_dir
    update_card: bool = True  # write the scores into the evaluated model's card (checkpoint or lineage)
    aloe_size: str | None = None  # e.g. "8B": show Aloe Beta's published scores for that size
    sc_cot: SCCoTParams = Field(default_factory=SCCoTParams)
    medprompt: MedpromptParams = Field(default_factory=MedpromptParams)

    @model_validator(mode="after")
    def _one_model(self) -> EvalRunConfig:
        served = self.base_url is not None or self.model is not None
        if served == (self.checkpoint is not None):
            raise ValueError("give exactly one model: `base_url` + `model` (served) or `checkpoint` (local); "
                             "on the command line --base-url URL --model NAME or --checkpoint PATH")
        if served and not (self.base_url and self.model):
            raise ValueError("a served model needs both `base_url` and `model`")
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url {self.base_url!r} must start with http:// or https://")
        unknown = [b for b in self.benchmarks if b not in KNOWN_SETS]
        if unknown:
            raise ValueError(f"unknown benchmarks {unknown}; known: {list(KNOWN_SETS)}")
        if self.scheme != "zero-shot" and self.checkpoint is not None:
            raise ValueError(f"scheme {self.scheme!r} needs a served model (it runs on synth's teacher client); "
                             "serve the checkpoint (`vllm serve` / `transformers serve`) and pass --base-url")
        if self.mode == "loglikelihood" and (self.scheme != "zero-shot" or self.checkpoint is None):
            raise ValueError("mode `loglikelihood` is for zero-shot on a local `checkpoint` (chat servers return "
                             "no prompt log-probabilities); use mode `generate` for served models")
        if self.scheme == "medprompt" and self.medprompt.k > 0 and not self.medprompt.dataset:
            raise ValueError("medprompt needs `medprompt.dataset` (a CoT dataset tag) or `medprompt.k: 0`")
        return self

    @property
    def label(self) -> str:
        return self.name or (self.model if self.model else Path(str(self.checkpoint)).name)


CONFIG_TYPES.setdefault("eval", EvalRunConfig)
