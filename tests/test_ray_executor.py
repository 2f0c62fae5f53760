"""`--executor ray` on a local two-worker Ray cluster on loopback gives the bytes of `--executor local`."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

# loopback only; no token auth: ~/.ray/auth_token is shared by every Ray user of this machine and may change
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
os.environ.update(RAY_ENV)  # read when ray is imported: keeps the driver's node address on loopback
pytest.importorskip("ray")

from curate.build import run_build  # noqa: E402
from curate.runner.balance import LoadTable  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster():
    """A one-node Ray cluster with two CPUs (two pool actors) on 127.0.0.1; stopped by the process group
    this fixture started (`ray start --block` runs in its own session)."""
    ray_cli = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    env = {**os.environ, **RAY_ENV, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path.cwd()), os.environ.get("PYTHONPATH")]))}
    common = ["--block", "--num-cpus=2", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    procs = [subprocess.Popen([ray_cli, "start", "--head", f"--port={port}", "--include-dashboard=false", *common],
                              env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    address = f"127.0.0.1:{port}"
    import ray

    deadline = time.time() + 120
    while time.time() < deadline:  # wait for the head
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(1)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {k: env[k] for k in ("PYTHONPATH",)}})
        while time.time() < deadline and ray.cluster_resources().get("CPU", 0) < 2:
            time.sleep(1)
        assert ray.cluster_resources().get("CPU") == 2
    except BaseException:
        _stop(procs)
        raise
    yield address
    ray.shutdown()
    _stop(procs)


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each `ray start` session we started, then SIGKILL what is left of it (gcs, raylet, workers)."""
    for proc in reversed(procs):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    time.sleep(5)
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ray_executor_gives_the_local_output(ray_cluster: str, data_dir: Path, work: Path, monkeypatch) -> None:
    monkeypatch.setenv("MEDCURATE_BENCHMARKS", str(data_dir))
    src = {"medqa": str(data_dir / "medqa/train_subset1030.json")}
    local = run_build("medqa-sft", source_overrides=src, out=work / "local", options={"batch_rows": 300})
    remote = run_build("medqa-sft", source_overrides=src, out=work / "ray",
                       options={"batch_rows": 300, "executor": "ray", "ray_address": ray_cluster})
    assert remote.manifest["output"]["sha256"] == local.manifest["output"]["sha256"]
    for key in ("rows_in", "rows_out", "rows_rejected"):
        assert remote.manifest[key] == local.manifest[key]
    counts = [[(s["name"], s["rows_in"], s["rows_kept"], s["rows_rejected"], s["reasons"]) for s in m["steps"]]
              for m in (local.manifest, remote.manifest)]
    assert counts[0] == counts[1]
    assert remote.manifest["runner"]["executor"] == "ray"


def test_load_table_routes_to_the_least_loaded_endpoint() -> None:
    table = LoadTable()
    picks = [table.acquire(3) for _ in range(3)]
    assert sorted(picks) == [0, 1, 2]  # equal loads spread over all endpoints
    table.release(3, 1)
    assert table.acquire(3) == 1  # the only endpoint with a free slot
    assert table.snapshot() == [1, 1, 1]


def test_local_executor_needs_no_ray() -> None:
    code = ("import sys, curate.build, curate.runner.executors as e; e.executor_for({}); "
            "sys.exit(1 if 'ray' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], env={**os.environ}).returncode == 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ray_teacher_steps_share_the_endpoints(ray_cluster: str, data_dir: Path, work: Path) -> None:
    """medqa-cot (cot + judge teacher steps) on 40 real rows in 4 shards: the pool actors send requests to
    both scripted endpoints, and the output equals the local executor's (each with its own call cache)."""
    from synth.testing import ScriptedServer

    src = {"medqa": str(data_dir / "medqa/train_subset1030.json")}
    with ScriptedServer() as one, ScriptedServer() as two:
        urls = [one.url, two.url]
        remote = run_build("medqa-cot", source_overrides=src, limit=40, out=work / "ray",
                           options={"batch_rows": 10, "executor": "ray", "ray_address": ray_cluster,
                                    "teacher_url": urls, "teacher_model": "t", "work_dir": str(work / "w-ray")})
        served = (len(one.completed_bodies()), len(two.completed_bodies()))
        local = run_build("medqa-cot", source_overrides=src, limit=40, out=work / "local",
                          options={"batch_rows": 10, "teacher_url": urls, "teacher_model": "t",
                                   "work_dir": str(work / "w-local")})
    assert min(served) > 0, served
    assert remote.manifest["output"]["sha256"] == local.manifest["output"]["sha256"]
    assert remote.manifest["rows_out"] == local.manifest["rows_out"] > 0



def _traced_ray_map(address: str) -> tuple[Any, list[int]]:
    """The Ray executor's `map_parts`, also noting the pid of the process that ran each part."""
    from curate.runner.ray_exec import RayExecutor

    ray_map, pids = RayExecutor(address).map_parts, []

    def traced(fn, n):
        for pid, result in ray_map(lambda i: (os.getpid(), fn(i)), n):
            pids.append(pid)
            yield result

    return traced, pids


def _spilled(frame: Any, rows: int, folder: Path) -> list[Path]:
    from curate.runner.state import write_part

    return [write_part(frame.slice(s, rows), folder / f"part-{s // rows:05d}.parquet")
            for s in range(0, frame.height, rows)]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dedup_scans_its_key_parts_in_ray_workers(ray_cluster: str, medqa_train, medmcqa_dev, tmp_path: Path,
                                                  cur_ctx) -> None:
    """Dedup's per-part scan (shingles, MinHash signatures, band keys) on real MedQA + MedMCQA rows in 10
    parts runs as Ray tasks in worker processes (not the driver), and decides exactly as in process."""
    from dataclasses import replace

    import polars as pl

    from curate.runner.globals import StageKeys
    from curate.runner.ray_exec import RayExecutor
    from curate.runner.state import unified
    from curate.steps.dedup import Dedup

    copies = medqa_train.head(60).with_columns(pl.format("copy-{}", pl.col("id")).alias("id"))
    frame = pl.concat([medqa_train, medmcqa_dev, copies], how="diagonal_relaxed")
    files = _spilled(frame, 500, tmp_path)
    plain = RayExecutor(ray_cluster).map_parts
    assert list(plain(lambda i: i * i, 9)) == [i * i for i in range(9)]  # more than the 4 in flight, in order
    traced, pids = _traced_ray_map(ray_cluster)
    step = Dedup({})
    ctx = replace(cur_ctx, scratch_dir=tmp_path / "scratch")
    reads = step.reads(frame.columns)
    local = step.decide(StageKeys(files, unified(files), reads), ctx)
    remote = step.decide(StageKeys(files, unified(files), reads, traced), ctx)
    assert len(pids) == len(files) == 10 and os.getpid() not in pids
    assert remote.stats == local.stats and remote.stats["exact_duplicates"] >= 60
    assert remote.code.tolist() == local.code.tolist() and remote.rep.tolist() == local.rep.tolist()
    assert remote.sim.tolist() == local.sim.tolist() and remote.rep_ids.equals(local.rep_ids)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_decontaminate_matches_its_key_parts_in_ray_workers(ray_cluster: str, medqa_train, data_dir: Path,
                                                            tmp_path: Path, cur_ctx, monkeypatch) -> None:
    """MedQA train rows plus 500 MedMCQA dev rows (a benchmark split of the pack) in 6 parts: the matching
    runs in Ray workers and gives the in-process matches, hits and stats."""
    import polars as pl
    from fixtures_curation import read_real

    from curate.runner.globals import StageKeys
    from curate.runner.state import unified
    from curate.steps import get_step

    monkeypatch.setenv("MEDCURATE_BENCHMARKS", str(data_dir))
    dev = read_real(data_dir, "medmcqa", "medmcqa/dev_last500.json")
    frame = pl.concat([medqa_train, dev.select(medqa_train.columns)])
    files = _spilled(frame, 256, tmp_path)
    traced, pids = _traced_ray_map(ray_cluster)
    step = get_step("decontaminate")({})
    reads = step.reads(frame.columns)
    local = step.decide(StageKeys(files, unified(files), reads), cur_ctx)
    remote = step.decide(StageKeys(files, unified(files), reads, traced), cur_ctx)
    assert len(pids) == len(files) == 6 and os.getpid() not in pids
    assert remote.stats == local.stats and remote.stats["hits"] >= 500
    assert remote.matches.equals(local.matches) and remote.items.equals(local.items)
