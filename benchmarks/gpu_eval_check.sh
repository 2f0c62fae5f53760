#!/usr/bin/env bash
# GPU check for issue 15: a randomly initialised ~1B Llama-shaped model (built from a config, no download),
# served by vLLM (or `transformers serve` when vLLM is not installed), then
#   1. `train eval` zero-shot (lm-eval, local-chat-completions) on the MultiMedQA pack, --limit $EVAL_LIMIT
#   2. `train eval --scheme sc-cot` (synth's client and cache), --limit $SC_LIMIT
#   3. `curate build medqa-cot --limit $COT_LIMIT` (the shipped MedQA train subset has 1,030 rows)
# and prints, per phase, requests/s and output tokens/s (from the server's Prometheus counters when it is
# vLLM, else from the client's own stats) and whether the client kept the server saturated (vLLM: share of
# 1 s samples with requests waiting in the queue or the running batch at >= 90% of --max-num-seqs).
#
#   bash benchmarks/gpu_eval_check.sh                 # from the repository root, on a GPU machine
#   SHAPE=tiny DEVICE=cpu EVAL_LIMIT=2 SC_LIMIT=1 COT_LIMIT=4 bash benchmarks/gpu_eval_check.sh   # CPU smoke
#
# Env: PY (python), DATA (../shared/data), PORT (8011), SHAPE (1b|tiny), DEVICE (cuda|cpu), EVAL_LIMIT (200),
# SC_LIMIT (50), COT_LIMIT (2000), CONCURRENCY (256), MAX_NUM_SEQS (256), MAX_TOKENS (256), KEEP=1 keeps
# the work folder, PHASE_TIMEOUT (s, 0 = none: a phase past it is stopped, recorded as timed out, and the next
# phase runs), SERVE_ARGS (extra `transformers serve` flags; default --continuous-batching on cuda, since
# without it transformers serve generates one request at a time).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PY:-python}"
DATA="${DATA:-$ROOT/../shared/data}"
PORT="${PORT:-8011}"
SHAPE="${SHAPE:-1b}"
DEVICE="${DEVICE:-cuda}"
EVAL_LIMIT="${EVAL_LIMIT:-200}"
SC_LIMIT="${SC_LIMIT:-50}"
COT_LIMIT="${COT_LIMIT:-2000}"
CONCURRENCY="${CONCURRENCY:-256}"
MAX_NUM_SEQS="${MAX_NUM_SEQS:-256}"  # vLLM's running-batch cap; saturated = at the cap or requests queued
MAX_TOKENS="${MAX_TOKENS:-256}"
PHASE_TIMEOUT="${PHASE_TIMEOUT:-0}"
# continuous batching sizes its KV cache from free memory: on cuda capped at 30% of the GPU; never on cpu
# (there it took 19 GB of host RAM for a 2-layer model and was OOM-killed)
if [ "$DEVICE" = cuda ]; then SERVE_ARGS="${SERVE_ARGS---continuous-batching --cb-max-memory-percent 0.3}"
else SERVE_ARGS="${SERVE_ARGS:-}"; fi
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu-eval-check.XXXXXX")"
MODEL_DIR="$WORK/model"
NAME="rand-llama-$SHAPE"
URL="http://127.0.0.1:$PORT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export MEDCURATE_BUILDS="$WORK/builds" MEDCURATE_TEACHER_CACHE="$WORK/cache/teacher-calls.sqlite"
SERVER_PID=""
SAMPLER_PID=""

cleanup() {
  [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null || true
  if [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; then
    # transformers serve can hang in shutdown ("Waiting for background tasks to complete"): 15 s, then SIGKILL
    for _ in $(seq 1 15); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
  fi
  if [ "${KEEP:-0}" = 1 ]; then echo "work folder kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT  # a stopped check still stops its server (cleanup)

echo "== building a random-init Llama ($SHAPE) in $MODEL_DIR (no download)"
"$PY" - "$MODEL_DIR" "$SHAPE" <<'PY'
import sys
from pathlib import Path

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

from train.tiny import IM_END, build_tiny_tokenizer

out, shape = Path(sys.argv[1]), sys.argv[2]
tok = build_tiny_tokenizer(vocab_size=8192)  # byte-level BPE trained locally; every id decodes
dims = {"1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                   num_key_value_heads=8),  # Llama-3.2-1B-like: ~0.99e9 parameters with this vocabulary
        "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2)}[shape]
eos = [tok.eos_token_id, tok.convert_tokens_to_ids(IM_END)]
config = LlamaConfig(vocab_size=len(tok), max_position_embeddings=4096, tie_word_embeddings=False,
                     bos_token_id=tok.bos_token_id, eos_token_id=eos, pad_token_id=tok.pad_token_id,
                     torch_dtype="bfloat16", **dims)
torch.manual_seed(0)
model = LlamaForCausalLM(config).to(torch.bfloat16)
model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=eos,
                                           pad_token_id=tok.pad_token_id, do_sample=False)
model.save_pretrained(out)
tok.model_max_length = 4096
tok.save_pretrained(out)
print(f"parameters: {sum(p.numel() for p in model.parameters()) / 1e9:.3f}e9, vocabulary {len(tok)}")
PY

if "$PY" -c "import vllm" 2>/dev/null && [ "$DEVICE" = cuda ]; then
  SERVER=vllm
  "$PY" -m vllm.entrypoints.openai.api_server --model "$MODEL_DIR" --served-model-name "$NAME" \
    --host 127.0.0.1 --port "$PORT" --dtype bfloat16 --max-model-len 4096 --seed 0 --max-num-seqs "$MAX_NUM_SEQS" \
    >"$WORK/server.log" 2>&1 &
else
  SERVER="transformers serve"
  TRANSFORMERS_BIN="$(dirname "$(command -v "$PY")")/transformers"
  [ -x "$TRANSFORMERS_BIN" ] || TRANSFORMERS_BIN=transformers
  # transformers serve (5.17) lists GET /v1/models from the HF cache alone, and synth's client refuses a model
  # the server does not list: the model goes into a private HF cache (hard links) and is served by repo id
  export HF_HUB_CACHE="$WORK/hf-hub"
  NAME="medcurate/rand-llama-$SHAPE"
  "$PY" - "$MODEL_DIR" "$HF_HUB_CACHE" "$NAME" <<'PY'
import os, shutil, sys
from pathlib import Path
src, cache, repo = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
root, rev = cache / ("models--" + repo.replace("/", "--")), "0" * 40
snap = root / "snapshots" / rev
for d in (root / "blobs", snap, root / "refs"):
    d.mkdir(parents=True, exist_ok=True)
(root / "refs" / "main").write_text(rev)
for i, f in enumerate(sorted(src.iterdir())):
    blob = root / "blobs" / f"{i:040d}"
    try:
        os.link(f, blob)
    except OSError:
        shutil.copyfile(f, blob)
    (snap / f.name).symlink_to(os.path.relpath(blob, snap))
print(f"model in the HF cache {cache} as {repo}")
PY
  # shellcheck disable=SC2086
  "$TRANSFORMERS_BIN" serve "$NAME" --host 127.0.0.1 --port "$PORT" --device "$DEVICE" $SERVE_ARGS \
    >"$WORK/server.log" 2>&1 &
fi
SERVER_PID=$!
echo "$SERVER_PID" >"$WORK/server.pid"
echo "== serving with $SERVER ${SERVE_ARGS:-} (pid $SERVER_PID), log $WORK/server.log"
for _ in $(seq 1 600); do
  if curl -sf "$URL/v1/models" >/dev/null 2>&1 || curl -sf "$URL/health" >/dev/null 2>&1; then break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited"; tail -50 "$WORK/server.log"; exit 1; }
  sleep 1
done
curl -sf "$URL/v1/models" >/dev/null 2>&1 || curl -sf "$URL/health" >/dev/null || { echo "server not ready"; exit 1; }

warmup() {  # one short chat request (also the first CUDA work); exit status 0 when the server answered it
  "$PY" - "$URL" "$NAME" <<'PY'
import json, sys, time, urllib.request
url, name = sys.argv[1:3]
body = json.dumps({"model": name, "max_tokens": 8, "messages": [{"role": "user", "content": "Hello"}]}).encode()
req = urllib.request.Request(f"{url}/v1/chat/completions", body, {"Content-Type": "application/json"})
t = time.time()
doc = json.loads(urllib.request.urlopen(req, timeout=120).read())
print(f"warm-up request: {time.time() - t:.1f} s, usage {doc.get('usage')}")
PY
}
if ! warmup; then
  if [ "$SERVER" = "transformers serve" ] && [ -n "$SERVE_ARGS" ]; then
    echo "warm-up failed with '$SERVE_ARGS'; restarting transformers serve without it"; tail -30 "$WORK/server.log"
    kill -9 "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVE_ARGS=""
    "$TRANSFORMERS_BIN" serve "$NAME" --host 127.0.0.1 --port "$PORT" --device "$DEVICE" \
      >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!; echo "$SERVER_PID" >"$WORK/server.pid"
    for _ in $(seq 1 300); do
      curl -sf "$URL/v1/models" >/dev/null 2>&1 || curl -sf "$URL/health" >/dev/null 2>&1 && break; sleep 1
    done
    warmup || { echo "warm-up failed"; tail -50 "$WORK/server.log"; exit 1; }
  else
    echo "warm-up failed"; tail -50 "$WORK/server.log"; exit 1
  fi
fi

# vLLM's Prometheus counters and gauges, summed over label sets: one JSON object per call
metrics() {
  local text
  if ! text="$(curl -sf "$URL/metrics" 2>/dev/null)"; then  # transformers serve: GPU busy % as a proxy
    text="$(nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits 2>/dev/null | head -1)" \
      && [ -n "$text" ] && echo "{\"gpu_util\": $text}" || echo '{}'
    return
  fi
  printf '%s\n' "$text" | "$PY" -c '
import json, re, sys
want = {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:request_success_total",
        "vllm:generation_tokens_total", "vllm:prompt_tokens_total"}
out = {}
for line in sys.stdin:
    m = re.match(r"^([a-zA-Z_:]+)(?:\{[^}]*\})?\s+([0-9.eE+-]+)$", line.strip())
    if m and m.group(1) in want:
        out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
print(json.dumps(out))'
}

sampler() {  # one line per second: running and waiting requests
  while true; do metrics >>"$WORK/samples-$1.jsonl"; sleep 1; done
}

RESULTS="$WORK/results.jsonl"
phase() {  # phase NAME CLIENT_STATS_JSON_PATH(or -) COMMAND...
  local name="$1" stats="$2"; shift 2
  echo "== $name: $*"
  local before after t0 t1
  before="$(metrics)"
  sampler "$name" & SAMPLER_PID=$!
  t0="$(date +%s.%N)"
  local rc=0
  if [ "$PHASE_TIMEOUT" -gt 0 ]; then timeout "$PHASE_TIMEOUT" "$@" >"$WORK/$name.log" 2>&1 || rc=$?
  else "$@" >"$WORK/$name.log" 2>&1 || rc=$?; fi
  t1="$(date +%s.%N)"
  if [ "$rc" != 0 ]; then
    echo "$name failed (exit $rc$([ "$rc" = 124 ] && echo ", timed out after ${PHASE_TIMEOUT}s"))"
    tail -40 "$WORK/$name.log"
  fi
  kill "$SAMPLER_PID" 2>/dev/null || true; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=""
  after="$(metrics)"
  "$PY" - "$name" "$t0" "$t1" "$before" "$after" "$WORK/samples-$name.jsonl" "$stats" "$MAX_NUM_SEQS" "$rc" \
    "$WORK/$name.log" >>"$RESULTS" <<'PY'
import json, sys
from pathlib import Path
name, t0, t1, before, after, samples, stats, cap, rc, log = sys.argv[1:11]
wall = float(t1) - float(t0)
b, a = json.loads(before or "{}"), json.loads(after or "{}")
row = {"phase": name, "wall_s": round(wall, 1), "exit": int(rc)}
lines = [json.loads(x) for x in Path(samples).read_text().splitlines() if x.strip()] if Path(samples).exists() else []
util = [x["gpu_util"] for x in lines if "gpu_util" in x]
if util:  # no queue metrics (transformers serve): share of 1 s samples with the GPU busy >= 90%
    row.update(mean_gpu_util=round(sum(util) / len(util), 1), gpu_busy_share=round(sum(u >= 90 for u in util) / len(util), 2))
if "vllm:request_success_total" in a:
    row["requests"] = a["vllm:request_success_total"] - b.get("vllm:request_success_total", 0)
    row["output_tokens"] = a["vllm:generation_tokens_total"] - b.get("vllm:generation_tokens_total", 0)
    row["source"] = "server"
    lines = [json.loads(x) for x in Path(samples).read_text().splitlines() if x.strip()] if Path(samples).exists() else []
    lines = [x for x in lines if x]
    if lines:
        running = [x.get("vllm:num_requests_running", 0) for x in lines]
        waiting = [x.get("vllm:num_requests_waiting", 0) for x in lines]
        busy = [w > 0 or r >= 0.9 * float(cap) for r, w in zip(running, waiting)]
        row.update(mean_running=round(sum(running) / len(running), 1), max_running=max(running),
                   mean_waiting=round(sum(waiting) / len(waiting), 1),
                   saturated_share=round(sum(busy) / len(busy), 2))
elif stats != "-" and Path(stats).is_file():
    doc = json.loads(Path(stats).read_text())
    client = doc.get("client") or {}
    # zero-shot runs in lm-eval, which keeps no token counts: one greedy request per question
    row["requests"] = client.get("requests", sum(b["questions"] for b in doc.get("benchmarks", {}).values()))
    row["output_tokens"] = client.get("completion_tokens")
    row["source"] = "client"
    work = Path(stats).parent.parent
    dbs = list((work / "cache").glob("lm-eval-*.db"))
    if row["output_tokens"] is None and dbs:  # lm-eval keeps the replies (text): re-tokenise them to count
        import pickle, sqlite3
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(work / "model")
        texts = [pickle.loads(v) for db in dbs for (v,) in sqlite3.connect(db).execute("SELECT value FROM unnamed")]
        texts = [t for t in texts if isinstance(t, str)]
        cap_tokens = (doc.get("params") or {}).get("max_tokens") or 10**9  # re-tokenising garbage can overcount
        row["output_tokens"] = sum(min(len(tok(t, add_special_tokens=False)["input_ids"]), cap_tokens) for t in texts)
        row["source"] = "client (lm-eval replies re-tokenised)"
if row.get("requests") is None or row.get("output_tokens") is None:
    # synth's call cache (sc-cot, medprompt, curate build): the calls this phase completed, by their time
    # stamps; it also counts a phase stopped by PHASE_TIMEOUT, whose eval.json was never written
    import os, sqlite3
    cache = os.environ.get("MEDCURATE_TEACHER_CACHE", "")
    if cache and Path(cache).is_file():
        con = sqlite3.connect(f"file:{cache}?mode=ro", uri=True)
        got = [json.loads(r) for (r,) in con.execute(
            "SELECT response FROM calls WHERE created BETWEEN ? AND ?", (float(t0), float(t1)))]
        if got:
            row["requests"] = len(got)
            row["output_tokens"] = sum((g.get("usage") or {}).get("completion_tokens") or 0 for g in got)
            row["source"] = "client (call cache)"
if row.get("requests") is not None:
    row["requests_per_s"] = round(row["requests"] / wall, 2)
if row.get("output_tokens") is not None:
    row["output_tokens_per_s"] = round(row["output_tokens"] / wall, 1)
print(json.dumps(row))
PY
}

phase eval-zero-shot "$WORK/eval-zs/eval.json" "$PY" -m train.cli eval recipes/train/eval-multimedqa.yaml --base-url "$URL/v1" \
  --model "$NAME" --limit "$EVAL_LIMIT" --output "$WORK/eval-zs" \
  --set concurrency="$CONCURRENCY" --set max_tokens="$MAX_TOKENS"
phase eval-sc-cot "$WORK/eval-sc/eval.json" "$PY" -m train.cli eval recipes/train/eval-multimedqa.yaml \
  --base-url "$URL/v1" --model "$NAME" --scheme sc-cot --limit "$SC_LIMIT" --output "$WORK/eval-sc" \
  --set concurrency="$CONCURRENCY" --set max_tokens="$MAX_TOKENS"
phase medqa-cot - "$PY" -m curate.cli build medqa-cot --quiet \
  --source "medqa=$DATA/medqa/train_subset1030.json" --limit "$COT_LIMIT" \
  --teacher-url "$URL/v1" --teacher-model "$NAME"

echo
echo "== results ($SERVER ${SERVE_ARGS:-}, model $SHAPE, concurrency $CONCURRENCY, max_tokens $MAX_TOKENS)"
"$PY" - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(x) for x in open(sys.argv[1]) if x.strip()]
cols = ["phase", "exit", "wall_s", "requests", "requests_per_s", "output_tokens", "output_tokens_per_s",
        "mean_running", "max_running", "mean_waiting", "saturated_share", "mean_gpu_util", "gpu_busy_share",
        "source"]
print("| " + " | ".join(cols) + " |")
print("|" + "---|" * len(cols))
for r in rows:
    print("| " + " | ".join(str(r.get(c, "n/a")) for c in cols) + " |")
for r in rows:
    share, gpu = r.get("saturated_share"), r.get("gpu_busy_share")
    if share is not None:
        verdict = "yes" if share >= 0.8 else f"no (saturated {share:.0%} of the time)"
    elif gpu is not None:  # proxy: a client that keeps the server fed keeps its GPU busy
        verdict = (f"yes by GPU utilisation (busy >= 90% in {gpu:.0%} of 1 s samples)" if gpu >= 0.8 else
                   f"no by GPU utilisation (busy >= 90% in {gpu:.0%} of 1 s samples, mean {r['mean_gpu_util']}%)")
    else:
        verdict = "unknown (no server metrics, no nvidia-smi)"
    print(f"{r['phase']}: client kept the server saturated: {verdict}")
PY
