"""Teacher client throughput: our full `cot` step vs the openai SDK (both transports) vs the bare floor.

    python benchmarks/teacher_client.py [--rows 2000] [--inflight 64 256 512] [--repeat 3]

A zero-latency oracle server runs in its own process on 127.0.0.1, so the numbers measure the client side:
`synth.oracle_server` (an asyncio Protocol on uvloop, ~30 us of CPU a request), or with `--server scripted` the
tests' `synth.testing.ScriptedServer` (asyncio streams, ~55 us); both give the same replies
(tests/test_oracle_server.py), and the table shows the server's CPU a request for each contender. Seven contenders
send the same rendered messages and params:
- "medcurate cot step": `cot.apply` end to end: prompt rendering, cache lookups and commits, HTTP (in the
  HTTP helper process, synth/transport_helper.py: `transport_process: auto` for a frame of >= 256 rows),
  answer parsing and verification (in the verification helper process, synth/lane.py), frame assembly;
- "medcurate cot (in-process HTTP)": the same with `transport_process: never` (A/B of the HTTP helper);
- "medcurate cot (aiohttp transp.)": ours with `transport: aiohttp` inside the helper (A/B of the transport);
- "openai (default httpx)": `AsyncOpenAI(...).chat.completions.create` under a semaphore, SDK defaults;
- "openai (aiohttp backend)": the same with `http_client=openai.DefaultAioHttpClient()`, the SDK's
  documented fast transport (the strongest peer setup);
- "bare aiohttp + orjson": one session, orjson in and out, a semaphore and nothing else: the floor of
  any pure-asyncio Python client (the issue's floor);
- "bare pyreqwest + orjson": the same loop on pyreqwest (Rust reqwest/hyper, HTTP outside the GIL), the
  transport our client uses by default (synth/transport.py): the floor of our own transport, so the table
  also shows what our step costs over it.
All run through `synth.client.run_sync` (uvloop when installed, the collector tuned by `synth.gc_tuning`), so
none gets a faster loop. Each contender runs `--repeat` times per setting, interleaved; the table shows the
median req/s with min and max, CPU ms per request (this process, all threads, plus this process's helper
processes: work moved out of the process is still counted), the part of it on the event-loop thread ("main
thread": where a Python client saturates first, one core) and ours / that contender. The helper processes
start in the warm-up run and live as long as the process, as in a build. Rows are real MedQA training
questions when ../shared/data is present, else synthetic ones of the same size. `--only ours` skips the
other contenders (ours and the floor always run: the ratio needs both).

The server shares the machine's cores with the client, so what it spends is taken from the client under test (a
vLLM fleet runs on other machines). On 2 cores ours is bound by the CPU of all its processes together (the
event-loop thread is busy about half the time), the bare loops by their one thread: more cores, or a leaner
server, favour ours (issue 17: with the scripted server ours was 0.84x the floor in an interleaved A/B, with the
oracle server 0.93x; the floor's own rate was the same with both, 7,443 and 7,414 req/s).

Ours' wall time ends when `cot.apply` returns; the call cache's WAL checkpoint that the writer thread runs after
(synth/cache.py) is waited for before the next contender and counted in ours' CPU.

Every run of ours starts from an empty call cache, so every call is a miss and a write to a small file;
a cache that already holds a few hundred thousand calls costs the writer thread several times more per
call (random-key index inserts: about 40 us CPU and 130-180 us wall a call at 300,000 cached calls, commits
of 100, against 6-9 us on an empty file; issue 17d).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curate.record import to_frame  # noqa: E402
from curate.steps import BuildContext, get_step  # noqa: E402
from synth.cache import wait_for_checkpoints  # noqa: E402
from synth.client import run_sync  # noqa: E402
from synth.prompts import COT_TEMPLATES, fields  # noqa: E402
from synth.runner import derive_seed  # noqa: E402


def load_rows(n: int) -> pl.DataFrame:
    data = Path(os.environ.get("MEDCURATE_TEST_DATA", ROOT.parent / "shared" / "data")) / "medqa" / "train_subset1030.json"
    if data.is_file():
        raw = json.loads(data.read_text())
        base = [{"question": r["question"], "answer": r["answer_idx"],
                 "options": [{"label": k, "text": v} for k, v in r["options"].items()]} for r in raw]
    else:
        base = [{"question": f"A {30 + i % 50}-year-old patient presents with findings number {i}. " * 8,
                 "answer": "ABCD"[i % 4], "options": [{"label": c, "text": f"option {c} for case {i}"} for c in "ABCD"]}
                for i in range(1000)]
    recs = []
    for i in range(n):  # repeat with a suffix so every row (and every call) is distinct
        r = base[i % len(base)]
        recs.append({**r, "question": r["question"] + ("" if i < len(base) else f" (variant {i // len(base)})"),
                     "source": "bench", "source_id": str(i), "source_split": "train", "task": "mcq"})
    return to_frame(recs)


SERVERS = {"oracle": "synth.oracle_server", "scripted": "synth.testing"}


def start_server(kind: str = "oracle") -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", SERVERS[kind], "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"oracle server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{line.split()[1]}/v1"


_SERVER_PID: int | None = None


def server_cpu() -> float:
    """CPU seconds the server process has used so far."""
    import psutil

    return sum(psutil.Process(_SERVER_PID).cpu_times()[:2])


def helpers_cpu() -> float:
    """CPU seconds used so far by this process's helper processes (the HTTP helper and the verification lane,
    kept for the life of the process), not the server: added to every contender's CPU, so ours is not flattered
    by work moved out of the process."""
    import psutil

    total = 0.0
    for child in psutil.Process().children():
        if child.pid != _SERVER_PID:
            with contextlib.suppress(psutil.Error):
                total += sum(child.cpu_times()[:2])
    return total


def run_ours(frame: pl.DataFrame, url: str, inflight: int, work: Path, **teacher_opts: str) -> dict:
    ctx = BuildContext(recipe_name="bench", work_dir=work, options={"teacher_url": url, "teacher_model": "bench"})
    teacher = {"profile": "vllm-local", "max_concurrency": inflight, **teacher_opts}
    step = get_step("cot")({"teacher": teacher, "max_attempts": 1, "log_every_s": 3600})
    c0, h0, m0, t0 = time.process_time(), helpers_cpu(), time.thread_time(), time.perf_counter()
    res = step.apply(frame, ctx)
    wall, main = time.perf_counter() - t0, time.thread_time() - m0
    wait_for_checkpoints()  # the cache's WAL checkpoint after the step (synth/cache.py): counted in the CPU, not the wall
    cpu = time.process_time() - c0 + helpers_cpu() - h0
    reqs = res.stats["client"]["requests"]
    assert res.kept.height == frame.height, res.rejected["reason"].value_counts()
    return {"requests": reqs, "rows": frame.height, "wall": wall, "cpu": cpu, "main": main,
            "cache_hits": res.stats["client"]["cache_hits"], "kept": res.kept.height}


def _jobs(frame: pl.DataFrame) -> tuple[list[tuple[list[dict], int]], dict]:
    """The exact (messages, seed) pairs and generation params the `cot` step sends for `frame`."""
    step = get_step("cot")({})
    tmpl = COT_TEMPLATES["mcq"]
    params = step.gen_params(0)
    params.pop("seed")
    return [(tmpl.render(fields(r)), derive_seed(0, r["id"], 1)) for r in frame.to_dicts()], params


def _timed(coro_factory) -> dict:
    c0, h0, m0, t0 = time.process_time(), helpers_cpu(), time.thread_time(), time.perf_counter()
    ok = run_sync(coro_factory)
    return {"requests": ok, "wall": time.perf_counter() - t0, "cpu": time.process_time() - c0 + helpers_cpu() - h0,
            "main": time.thread_time() - m0}


def run_openai(frame: pl.DataFrame, url: str, inflight: int, backend: str) -> dict:
    """`openai.AsyncOpenAI` with its default httpx transport, or with its aiohttp transport
    (`DefaultAioHttpClient`, the SDK's documented fast path); the same requests, nothing else done."""
    import httpx2
    import openai

    jobs, params = _jobs(frame)

    async def main() -> int:
        # both transports get a pool as large as the in-flight bound (the httpx default pool of 100 keep-alive
        # connections times out under 512 in flight)
        limits = httpx2.Limits(max_connections=inflight, max_keepalive_connections=inflight)
        cls = openai.DefaultAioHttpClient if backend == "aiohttp" else openai.DefaultAsyncHttpxClient
        http = {"http_client": cls(limits=limits)}
        client = openai.AsyncOpenAI(base_url=url, api_key="bench", max_retries=0, timeout=120.0, **http)
        sem = asyncio.Semaphore(inflight)

        async def one(messages, seed) -> int:
            async with sem:
                r = await client.chat.completions.create(model="bench", messages=messages, seed=seed, **params)
                return len(r.choices[0].message.content or "") > 0

        done = await asyncio.gather(*(one(m, s) for m, s in jobs))
        await client.close()
        return sum(done)

    out = _timed(main)
    assert out["requests"] == frame.height
    return {**out, "cache_hits": 0, "kept": out["requests"]}


def run_bare(frame: pl.DataFrame, url: str, inflight: int) -> dict:
    """The floor of any Python client: one aiohttp session, orjson in and out, a semaphore, nothing else
    (no cache, no retries, no parsing beyond reading the text)."""
    import aiohttp
    import orjson

    jobs, params = _jobs(frame)

    async def main() -> int:
        conn = aiohttp.TCPConnector(limit=inflight, limit_per_host=0)
        async with aiohttp.ClientSession(connector=conn, headers={"Content-Type": "application/json"}) as s:
            sem = asyncio.Semaphore(inflight)

            async def one(messages, seed) -> int:
                data = orjson.dumps({"model": "bench", "messages": messages, "seed": seed, **params})
                async with sem, s.post(url + "/chat/completions", data=data) as r:
                    body = orjson.loads(await r.read())
                return len(body["choices"][0]["message"]["content"] or "") > 0

            return sum(await asyncio.gather(*(one(m, s_) for m, s_ in jobs)))

    out = _timed(main)
    assert out["requests"] == frame.height
    return {**out, "cache_hits": 0, "kept": out["requests"]}


def run_bare_reqwest(frame: pl.DataFrame, url: str, inflight: int) -> dict:
    """The bare loop on pyreqwest: one client with a pool of `inflight` connections, orjson in and out, a
    semaphore, the whole body read at once; nothing else."""
    from datetime import timedelta

    import orjson
    from pyreqwest.client import ClientBuilder

    jobs, params = _jobs(frame)

    async def main() -> int:
        builder = ClientBuilder().max_connections(inflight).timeout(timedelta(seconds=120)).no_proxy()
        async with builder.default_headers({"Content-Type": "application/json"}).build() as client:
            sem = asyncio.Semaphore(inflight)

            async def one(messages, seed) -> int:
                data = orjson.dumps({"model": "bench", "messages": messages, "seed": seed, **params})
                async with sem:
                    resp = await client.post(url + "/chat/completions").body_bytes(data).build().send()
                    body = orjson.loads((await resp.bytes()).to_bytes())
                return len(body["choices"][0]["message"]["content"] or "") > 0

            return sum(await asyncio.gather(*(one(m, s_) for m, s_ in jobs)))

    out = _timed(main)
    assert out["requests"] == frame.height
    return {**out, "cache_hits": 0, "kept": out["requests"]}


def _summary(runs: list[dict]) -> dict:
    rates = sorted(r["requests"] / r["wall"] for r in runs)
    cpu = sorted(1000 * r["cpu"] / max(r["requests"], 1) for r in runs)
    main = sorted(1000 * r["main"] / max(r["requests"], 1) for r in runs)
    return {"median": statistics.median(rates), "min": rates[0], "max": rates[-1],
            "cpu_ms": statistics.median(cpu), "main_ms": statistics.median(main), "requests": runs[0]["requests"],
            "server_us": statistics.median(1e6 * r.get("server", 0) / max(r["requests"], 1) for r in runs),
            "cache_hits": runs[0]["cache_hits"], "kept": runs[0]["kept"]}


CONTENDERS = {
    "medcurate cot step": lambda f, url, n, d: run_ours(f, url, n, d),
    "medcurate cot (in-process HTTP)": lambda f, url, n, d: run_ours(f, url, n, d, transport_process="never"),
    "medcurate cot (aiohttp transp.)": lambda f, url, n, d: run_ours(f, url, n, d, transport="aiohttp"),
    "openai (default httpx)": lambda f, url, n, d: run_openai(f, url, n, "httpx"),
    "openai (aiohttp backend)": lambda f, url, n, d: run_openai(f, url, n, "aiohttp"),
    "bare aiohttp + orjson (floor)": lambda f, url, n, d: run_bare(f, url, n),
    "bare pyreqwest + orjson": lambda f, url, n, d: run_bare_reqwest(f, url, n),
}

_SHORT = dict(zip(CONTENDERS, ("ours", "ours-inprocess", "ours-aiohttp", "httpx", "aiohttp", "floor", "reqwest"),
                  strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--inflight", type=int, nargs="+", default=[64, 256, 512])
    ap.add_argument("--repeat", type=int, default=3, help="runs per contender and setting (median, min, max)")
    ap.add_argument("--server", choices=list(SERVERS), default="oracle",
                    help="oracle: synth.oracle_server (lean, ~30 us CPU a request); scripted: the tests' "
                    "synth.testing.ScriptedServer (~55 us): the server shares the client's cores")
    ap.add_argument("--only", nargs="+", choices=list(_SHORT.values()),
                    help="run only these contenders (ours and the floor are always run: the ratio needs both)")
    args = ap.parse_args()
    logging.getLogger("medcurate").setLevel(logging.WARNING)
    contenders = {name: fn for name, fn in CONTENDERS.items()
                  if not args.only or _SHORT[name] in args.only or _SHORT[name] in ("ours", "floor")}
    frame = load_rows(args.rows)
    global _SERVER_PID
    proc, url = start_server(args.server)
    _SERVER_PID = proc.pid
    table: list[tuple[str, int, dict]] = []
    try:
        # warm-up: imports, connections, and the helper processes that the step starts on its first frame of at least
        # LANE_MIN_ROWS rows sent LANE_MIN_CONCURRENCY or more at a time and keeps for the life of the process
        # (synth/lane.py, synth/transport_helper.py)
        run_ours(frame.head(500), url, 512, Path(tempfile.mkdtemp()))
        for inflight in args.inflight:
            runs: dict[str, list[dict]] = {name: [] for name in contenders}
            replay: list[dict] = []
            for _ in range(args.repeat):  # interleaved, so drift on a shared machine hits every contender alike
                for name, fn in contenders.items():
                    with tempfile.TemporaryDirectory() as d:
                        s0 = server_cpu()
                        run = fn(frame, url, inflight, Path(d))
                        runs[name].append({**run, "server": server_cpu() - s0})
                        if name == "medcurate cot step":  # 2nd run on the same cache: every call a hit
                            again = run_ours(frame, url, inflight, Path(d))
                            replay.append({**again, "http": again["requests"], "requests": frame.height})
            for name in contenders:
                table.append((name, inflight, _summary(runs[name])))
            table.append(("medcurate cot, cache replay", inflight, _summary(replay)))
    finally:
        proc.terminate()
        proc.wait(5)
    load = os.getloadavg()[0]
    print(f"\nteacher client vs zero-latency local server ({SERVERS[args.server]}), {args.rows} MedQA-sized CoT "
          f"requests per run, "
          f"{os.cpu_count()} cores, load average {load:.1f}; median of {args.repeat} runs (min-max)")
    print("every contender sends the same rendered messages and params; ours also renders prompts, looks up and "
          "commits the call cache, parses and verifies each answer and assembles the frame (rows kept = rows that "
          "passed verification; for the others, replies with text)")
    print(f"{'client':<32} {'in flight':>9} {'requests':>9} {'cache hits':>10} {'rows kept':>9} {'req/s median':>13} "
          f"{'min-max':>13} {'CPU ms/req':>11} {'main thread':>11} {'server us/req':>13} {'ours / this':>12}")
    ours = {n: r for name, n, r in table if name == "medcurate cot step"}
    for name, inflight, r in table:
        ratio = ours[inflight]["median"] / r["median"]
        http = r["requests"] - r["cache_hits"] if name.endswith("replay") else r["requests"]
        print(f"{name:<32} {inflight:>9} {http:>9} {r['cache_hits']:>10} {r['kept']:>9} {r['median']:>13,.0f} "
              f"{r['min']:>6,.0f}-{r['max']:<6,.0f} {r['cpu_ms']:>11.3f} {r['main_ms']:>11.3f} "
              f"{(format(r['server_us'], '.0f') if r['server_us'] else '-'):>13} {ratio:>11.2f}x")
    floor = {n: r for name, n, r in table if name.startswith("bare aiohttp")}
    native = {n: r for name, n, r in table if name.startswith("bare pyreqwest")}
    for n in sorted(ours):
        print(f"at {n} in flight: ours / bare aiohttp floor = {ours[n]['median'] / floor[n]['median']:.2f}x "
              f"(medians; target >= 0.80x at 512)"
              + (f"; ours / bare pyreqwest = {ours[n]['median'] / native[n]['median']:.2f}x" if n in native else ""))
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio (pip install uvloop: about 25% less client CPU)"
    print(f"(all contenders run through synth.client.run_sync: the same event loop ({loop}) and collector settings "
          f"(synth.gc_tuning); cache replay = rows/s served from the sqlite "
          "cache, no HTTP; target: ours >= 0.80x the bare floor at 512 in flight)")


if __name__ == "__main__":
    main()
