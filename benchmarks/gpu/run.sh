#!/usr/bin/env bash
# Issue 15's GPU check as one call on a GPU machine that has no network (from the repository root):
#   bash benchmarks/gpu/fetch_wheels.sh      # here: .gpu/whl = cp312 wheels of what that machine lacks (~47 MB)
#   mkdir -p .gpu/data/medqa && cp ../shared/data/medqa/{train_subset1030.json,LICENSE.MedQA} .gpu/data/medqa/
#   ... then on the GPU machine, with .gpu carried:  bash benchmarks/gpu/run.sh
# Installs .gpu/whl (polars 1.33.1, pydantic, lm-eval, datasets, fastapi/uvicorn/openai for `transformers serve`,
# ...) into /tmp/site, then runs benchmarks/gpu_eval_check.sh (continuous batching, per-phase timeout,
# GPU-utilisation saturation proxy, client counts from the call cache) on a random-init 1B Llama served by
# `transformers serve` on cuda (vLLM when installed; its wheel alone is 336 MB). Ends in ~7 min; $OUT gets 8 files.
# Rehearsal on CPU: SHAPE=tiny DEVICE=cpu EVAL_LIMIT=2 SC_LIMIT=1 COT_LIMIT=4 ... bash benchmarks/gpu/run.sh
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"; cd "$ROOT" || exit 1
G="${GPU_CARRY:-$ROOT/.gpu}"  # wheels (whl/) and data (data/medqa/) carried to the GPU machine
OUT="${OUT:-/tmp/gpu-check-out}"; mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
PY="${PY:-python3}"
SITE="${SITE:-/tmp/site}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 \
  TOKENIZERS_PARALLELISM=false RAY_USAGE_STATS_ENABLED=0 DO_NOT_TRACK=1
export HF_HOME="${HF_HOME:-/tmp/hf-home}"
T0=$(date +%s)
stamp() { echo "[run.sh +$(( $(date +%s) - T0 ))s] $*"; }

stamp "install wheels into $SITE"
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$G"/whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
fi
export PYTHONPATH="$SITE"

# curl is used by the check script; a stand-in if the image lacks it (-s -f URL only, as the script calls it)
if ! command -v curl >/dev/null; then
  mkdir -p /tmp/shim && cat >/tmp/shim/curl <<EOF
#!$(command -v "$PY")
import sys, urllib.request
url = [a for a in sys.argv[1:] if not a.startswith("-")][-1]
try:
    sys.stdout.write(urllib.request.urlopen(url, timeout=5).read().decode()); sys.exit(0)
except Exception:
    sys.exit(22)
EOF
  chmod +x /tmp/shim/curl; export PATH="/tmp/shim:$PATH"; stamp "curl missing: using /tmp/shim/curl"
fi

SCRIPT=benchmarks/gpu_eval_check.sh
[ -d train/evaluation ] || { echo "train/evaluation missing: merge branch i15 first"; exit 1; }

stamp "preflight (imports, versions, GPU)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
PYTHONPATH="$ROOT:$SITE" "$PY" - <<'PYEOF' || { echo "preflight failed: a missing or incompatible package (above)"; exit 1; }
import importlib, importlib.metadata as md, sys
print("python", sys.version.split()[0])
print(" ".join(f"{d}={md.version(d)}" for d in ("torch", "transformers", "huggingface_hub", "pyarrow", "pandas",
      "polars", "pydantic", "datasets", "lm_eval", "fastapi", "uvicorn", "openai", "typing_extensions", "anyio")))
for m in ("polars", "pydantic", "datasets", "lm_eval", "lm_eval.models.openai_completions", "fastapi", "uvicorn",
          "openai", "curate.cli", "train.cli", "synth.client", "train.evaluation.harness", "transformers.cli.serve"):
    importlib.import_module(m)
from transformers.utils.import_utils import is_serve_available
assert is_serve_available(), "transformers serve dependencies missing"
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PYEOF

stamp "check: $SCRIPT"
mkdir -p /tmp/gpuwork
# Sizes for ~5 min of phases on an H200 (1B random model: replies run to max_tokens; medqa-cot's recipe asks
# 1024 tokens per CoT call, up to 3 attempts per row). PHASE_TIMEOUT stops a slow phase and keeps the rest.
env PY="$PY" DATA="$G/data" SHAPE="${SHAPE:-1b}" DEVICE="${DEVICE:-cuda}" EVAL_LIMIT="${EVAL_LIMIT:-20}" \
  SC_LIMIT="${SC_LIMIT:-4}" COT_LIMIT="${COT_LIMIT:-40}" CONCURRENCY="${CONCURRENCY:-64}" \
  MAX_TOKENS="${MAX_TOKENS:-256}" PHASE_TIMEOUT="${PHASE_TIMEOUT:-90}" TMPDIR=/tmp/gpuwork KEEP=1 \
  timeout -k 30 "${CHECK_TIMEOUT:-360}" bash "$SCRIPT"
RC=$?
stamp "check exit $RC$([ "$RC" = 124 ] && echo " (stopped at CHECK_TIMEOUT)")"

# at most 8 files back: run.log (this output), summary.md, results.jsonl, server.log, phases.log, samples.jsonl,
# eval-zero-shot.json, eval-sc-cot.json
W="$(ls -dt /tmp/gpuwork/gpu-eval-check.* 2>/dev/null | head -1)"
if [ -n "$W" ]; then
  # last resort: the server the check started (it may hang in shutdown); by its recorded pid only
  [ -f "$W/server.pid" ] && kill -9 "$(cat "$W/server.pid")" 2>/dev/null && stamp "killed leftover server"
  cp "$W/results.jsonl" "$OUT/" 2>/dev/null
  tail -c 4000000 "$W/server.log" >"$OUT/server.log" 2>/dev/null
  for f in "$W"/eval-zero-shot.log "$W"/eval-sc-cot.log "$W"/medqa-cot.log; do
    [ -f "$f" ] && { echo "===== $f"; tail -c 1000000 "$f"; }; done >"$OUT/phases.log"
  for f in "$W"/samples-*.jsonl; do [ -f "$f" ] && sed "s|^|$(basename "$f" .jsonl) |" "$f"; done >"$OUT/samples.jsonl"
  cp "$W/eval-zs/eval.json" "$OUT/eval-zero-shot.json" 2>/dev/null
  cp "$W/eval-sc/eval.json" "$OUT/eval-sc-cot.json" 2>/dev/null
  sed -n '/^== results/,$p' "$OUT/run.log" >"$OUT/summary.md"
fi
stamp "done; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit $RC
