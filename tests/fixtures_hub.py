"""Registry test fixtures: build folders from real MedQA rows, and a loopback fake of the Hub API.

`fake_hub` speaks the part of the Hub HTTP API that `curate.registry.hub` uses through the real
`huggingface_hub` client: repo create, validate-yaml, preupload, commit (NDJSON), tag create, refs,
revision info, tree listing and file resolve. It keeps every call in `hub.calls` so tests can check
the order, and can inject 429 / 412 answers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import polars as pl
import pytest

from curate.record import to_frame

# --------------------------------------------------------------------------------------------------
# build folders written in the documented layout (docs/ARCHITECTURE.md "Build folder")
# --------------------------------------------------------------------------------------------------


def medqa_frame(data_dir: Path, start: int = 0, stop: int = 200) -> pl.DataFrame:
    """Canonical frame of MedQA train rows [start, stop) (source_id = 1-based row number)."""
    raw = json.loads((data_dir / "medqa" / "train_subset1030.json").read_text())
    records = [
        {
            "source": "medqa", "source_id": str(i + 1), "source_split": "train", "task": "mcq",
            "question": r["question"], "context": None,
            "options": [{"label": k, "text": v} for k, v in r["options"].items()],
            "answer": r["answer_idx"], "explanation": None, "subject": r.get("validated_category"),
        }
        for i, r in enumerate(raw[start:stop], start=start)
    ]
    return to_frame(records)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_build(
    root: Path,
    name: str,
    splits: dict[str, pl.DataFrame],
    *,
    build_id: str | None = None,
    source_sha: str = "a" * 64,
    rows_in: int | None = None,
    teacher: dict[str, Any] | None = None,
    card: Callable[[dict], str] | None = None,
) -> Path:
    """Write `root/<name>/<build-id>/` like the build runner does and point LATEST at it."""
    build_id = build_id or datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]
    folder = root / name / build_id
    (folder / "data").mkdir(parents=True)
    files, hashes = [], {}
    for split, frame in splits.items():
        rel = f"data/{split}-00000-of-00001.parquet"
        frame.write_parquet(folder / rel)
        files.append(rel)
        hashes[rel] = _sha(folder / rel)
    rows_out = sum(f.height for f in splits.values())
    rows_in = rows_in if rows_in is not None else rows_out + 7
    rejected = rows_in - rows_out
    total = hashlib.sha256(b"".join(bytes.fromhex(hashes[f]) for f in files)).hexdigest()  # as the build runner
    manifest = {
        "name": name, "build_id": build_id, "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "recipe": {"name": name, "sha256": hashlib.sha256(name.encode()).hexdigest(), "path": f"recipes/{name}.yaml",
                   "description": "MedQA USMLE questions as chat SFT data.", "license": "mit",
                   "language": ["en"], "task_categories": ["question-answering"], "tags": ["medical", "mcq"],
                   "pretty_name": "MedQA SFT"},
        "sources": [{"name": "medqa", "format": "medqa", "uri": "data/medqa/train_subset1030.json",
                     "sha256": source_sha, "rows": rows_in, "rows_kept": rows_in, "rows_rejected": 0,
                     "license": "mit", "revision": None}],
        "steps": [
            {"name": "validate", "rows_in": rows_in, "rows_kept": rows_in - 3, "rows_rejected": 3, "seconds": 0.01,
             "params": {}, "stats": {}, "reasons": {"answer_not_in_options": 2, "empty_question": 1}},
            {"name": "dedup", "rows_in": rows_in - 3, "rows_kept": rows_in - 5, "rows_rejected": 2, "seconds": 0.2,
             "params": {"ngram": 5, "num_perm": 128, "threshold": 0.8},
             "stats": {"bands": 16, "rows": 8, "clusters": 2}, "reasons": {"near_duplicate": 2}},
            {"name": "decontaminate", "rows_in": rows_in - 5, "rows_kept": rows_out, "rows_rejected": 2,
             "seconds": 0.3, "params": {"ngram": 13, "min_short_tokens": 4},
             "stats": {"benchmarks": {
                 "medqa_test": {"rows": 1273, "checked": rows_in - 5, "hits": 2, "hit_rate": 2 / (rows_in - 5),
                                "found": True, "where": "medqa/test.jsonl", "note": None},
                 "headqa_test": {"rows": 0, "checked": 0, "hits": 0, "hit_rate": 0.0, "found": False,
                                 "where": None, "note": "no files matching headqa/test.json"}},
                 "missing": ["headqa_test"]},
             "reasons": {"benchmark_overlap": 2}},
        ],
        "rows_in": rows_in, "rows_out": rows_out, "rows_rejected": rejected,
        "splits": {s: f.height for s, f in splits.items()},
        "output": {"sha256": total, "files": files, "file_sha256": hashes,
                   "columns": list(next(iter(splits.values())).columns)},
        "teacher": teacher, "limit": None, "seed": 0,
        "versions": {"medcurate": "0.1.0", "polars": pl.__version__, "python": "3.11"},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (folder / "report.md").write_text(f"# {name}\n")
    if card is not None:
        (folder / "README.md").write_text(card(manifest))
    (root / name / "LATEST").write_text(build_id)
    return folder


@pytest.fixture
def builds(work: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty builds root (`$MEDCURATE_BUILDS`) inside the scratch cwd."""
    root = work / "builds"
    root.mkdir()
    monkeypatch.setenv("MEDCURATE_BUILDS", str(root))
    return root


# --------------------------------------------------------------------------------------------------
# fake Hub
# --------------------------------------------------------------------------------------------------


class FakeHub:
    """In-memory repos: {repo_id: {"private", "commits": {oid: files}, "branches", "tags"}}."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.auth: list[str] = []
        self.fail: dict[str, list[int]] = {}  # "commit" / "tag" / "preupload" -> statuses to answer first
        self.lock = threading.Lock()
        self.url = ""

    # helpers for tests
    def inject(self, what: str, *statuses: int) -> None:
        self.fail.setdefault(what, []).extend(statuses)

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return repo["commits"][self._resolve(repo, revision)]

    def corrupt(self, repo_id: str, revision: str, path: str) -> None:
        files = self.files(repo_id, revision)
        data = bytearray(files[path])
        data[len(data) // 2] ^= 0xFF
        files[path] = bytes(data)

    @staticmethod
    def _resolve(repo: dict[str, Any], rev: str) -> str | None:
        if rev in repo["branches"]:
            return repo["branches"][rev]
        if rev in repo["tags"]:
            return repo["tags"][rev]
        matches = [c for c in repo["commits"] if c.startswith(rev)]
        return matches[0] if len(matches) == 1 else None


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None,
                  raw: bytes | None = None) -> None:
            data = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream" if raw is not None else "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": message}, {"X-Error-Message": message})

        def _body(self) -> bytes:
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _injected(self, what: str) -> bool:
            with hub.lock:
                queue = hub.fail.get(what)
                status = queue.pop(0) if queue else None
            if status is None:
                return False
            headers = {"Retry-After": "0"} if status == 429 else {}
            self._send(status, {"error": f"injected {status}"}, headers)
            return True

        def _route(self) -> None:
            path = unquote(urlparse(self.path).path)
            hub.calls.append((self.command, path))
            hub.auth.append(self.headers.get("Authorization") or "")
            body = self._body()
            parts = path.strip("/").split("/")
            if path == "/api/repos/create":
                return self._create(json.loads(body))
            if path == "/api/validate-yaml":
                return self._send(200, {"errors": [], "warnings": []})
            if path == "/api/whoami-v2":
                return self._send(200, {"name": "tester", "type": "user"})
            if parts[:2] == ["api", "datasets"] and len(parts) >= 5:
                repo_id, action, rest = f"{parts[2]}/{parts[3]}", parts[4], "/".join(parts[5:])
                repo = hub.repos.get(repo_id)
                if repo is None:
                    return self._send(404, {"error": "Repository not found"},
                                      {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
                return getattr(self, f"_{action}")(repo_id, repo, rest, body)
            if parts[0] == "datasets" and len(parts) >= 6 and parts[3] == "resolve":
                repo = hub.repos.get(f"{parts[1]}/{parts[2]}")
                if repo is None:
                    return self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                return self._resolve_file(repo, parts[4], "/".join(parts[5:]))
            return self._error(404, f"fake hub: no route for {self.command} {path}")

        do_GET = do_POST = do_HEAD = do_DELETE = _route

        # --- endpoints -------------------------------------------------------------------------
        def _create(self, req: dict[str, Any]) -> None:
            repo_id = f"{req.get('organization') or 'tester'}/{req['name']}"
            with hub.lock:
                if repo_id in hub.repos:
                    return self._send(409, {"error": "You already created this dataset repo",
                                            "url": f"{hub.url}/datasets/{repo_id}"})
                oid = hashlib.sha1(repo_id.encode()).hexdigest()
                hub.repos[repo_id] = {"private": bool(req.get("private")) or req.get("visibility") == "private", "commits": {oid: {}},
                                      "parents": {oid: None}, "dates": {oid: time.time()},
                                      "branches": {"main": oid}, "tags": {}}
            self._send(200, {"url": f"{hub.url}/datasets/{repo_id}", "name": repo_id})

        def _preupload(self, repo_id: str, repo: dict[str, Any], rest: str, body: bytes) -> None:
            if self._injected("preupload"):
                return
            files = json.loads(body)["files"]
            self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                       for f in files]})

        def _commit(self, repo_id: str, repo: dict[str, Any], rest: str, body: bytes) -> None:
            if self._injected("commit"):
                return
            branch = rest or "main"
            lines = [json.loads(x) for x in body.splitlines() if x.strip()]
            header = next(x["value"] for x in lines if x["key"] == "header")
            with hub.lock:
                head = repo["branches"].get(branch)
                parent = header.get("parentCommit")
                if parent and parent != head:
                    return self._error(412, "A commit has happened since. Please refresh and try again.")
                files = dict(repo["commits"][head])
                for x in lines:
                    if x["key"] == "file":
                        files[x["value"]["path"]] = base64.b64decode(x["value"]["content"])
                    elif x["key"] == "deletedFile":
                        files.pop(x["value"]["path"], None)
                    elif x["key"] == "deletedFolder":
                        prefix = x["value"]["path"].rstrip("/") + "/"
                        files = {k: v for k, v in files.items() if not k.startswith(prefix)}
                    elif x["key"] == "lfsFile":
                        return self._error(400, "fake hub: LFS uploads are not supported")
                oid = hashlib.sha1(f"{head}{uuid.uuid4()}".encode()).hexdigest()
                repo["commits"][oid] = files
                repo["parents"][oid] = head
                repo["dates"][oid] = time.time()
                repo["branches"][branch] = oid
            self._send(200, {"commitUrl": f"{hub.url}/datasets/{repo_id}/commit/{oid}", "commitOid": oid,
                             "success": True})

        def _tag(self, repo_id: str, repo: dict[str, Any], rest: str, body: bytes) -> None:
            if self._injected("tag"):
                return
            if self.command == "DELETE":
                repo["tags"].pop(rest, None)
                return self._send(200, {})
            tag = json.loads(body)["tag"]
            with hub.lock:
                oid = FakeHub._resolve(repo, rest)
                if oid is None:
                    return self._error(404, f"revision {rest} not found")
                if tag in repo["tags"]:
                    return self._error(409, f"Tag {tag} already exists")
                repo["tags"][tag] = oid
            self._send(200, {})

        def _branch(self, repo_id: str, repo: dict[str, Any], rest: str, body: bytes) -> None:
            with hub.lock:
                if self.command == "DELETE":
                    repo["branches"].pop(rest, None)
                    return self._send(200, {})
                if rest in repo["branches"]:
                    return self._error(409, f"Branch {rest} already exists")
                start = (json.loads(body) if body else {}).get("startingPoint") or "main"
                oid = FakeHub._resolve(repo, start)
                if oid is None:
                    return self._error(404, f"revision {start} not found")
                repo["branches"][rest] = oid
            self._send(200, {})

        def _refs(self, repo_id: str, repo: dict[str, Any], rest: str, body: bytes) -> None:
            self._send(200, {
                "branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": c} for b, c in repo["branches"].items()],
                "tags": [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": c} for t, c in repo["tags"].items()],
                "converts": [],
            })

        def _revision(self, repo_id: str, repo: dict[str, Any], rest: str, body: bytes) -> None:
            oid = FakeHub._resolve(repo, rest)
            if oid is None:
                return self._send(404, {"error": f"Invalid rev id: {rest}"},
                                  {"X-Error-Code": "RevisionNotFound", "X-Error-Message": f"Invalid rev id: {rest}"})
            files = repo["commits"][oid]
            self._send(200, {
                "id": repo_id, "_id": repo_id, "sha": oid, "private": repo["private"], "disabled": False,
                "gated": False, "downloads": 0, "likes": 0, "tags": [], "author": repo_id.split("/")[0],
                "lastModified": datetime.fromtimestamp(repo["dates"][oid], UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "siblings": [{"rfilename": p, "size": len(b)} for p, b in sorted(files.items())],
            })

        def _tree(self, repo_id: str, repo: dict[str, Any], rest: str, body: bytes) -> None:
            rev = rest.split("/")[0]
            oid = FakeHub._resolve(repo, rev)
            if oid is None:
                return self._send(404, {"error": f"Invalid rev id: {rev}"}, {"X-Error-Code": "RevisionNotFound"})
            files = repo["commits"][oid]
            self._send(200, [{"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                             for p, b in sorted(files.items())])

        def _resolve_file(self, repo: dict[str, Any], rev: str, path: str) -> None:
            oid = FakeHub._resolve(repo, rev)
            if oid is None:
                return self._send(404, {"error": "revision not found"}, {"X-Error-Code": "RevisionNotFound"})
            data = repo["commits"][oid].get(path)
            if data is None:
                return self._send(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
            etag = hashlib.sha1(data).hexdigest()
            self._send(200, raw=data, headers={"X-Repo-Commit": oid, "ETag": f'"{etag}"'})

    return Handler


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A loopback Hub; HF_ENDPOINT, HF_TOKEN and an online huggingface_hub point at it for this test."""
    import huggingface_hub.constants as hf_constants

    hub = FakeHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    # as if HF_ENDPOINT had been set before huggingface_hub was imported
    monkeypatch.setattr(hf_constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    monkeypatch.setenv("HF_TOKEN", "hf_" + "Zq7" * 10)
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
