"""`curate push / pull / versions / diff`: added to the `curate` app by ``register(app)``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from curate import registry
from curate.cli_output import JsonFlag, emit_json, stdout_console
from curate.errors import MedcurateError

out = Console()


def _backend(value: str | None) -> registry.Backend | None:
    if value is None:
        return None
    if value not in ("local", "hub"):
        raise MedcurateError(f"--to/--from must be 'local' or 'hub', got {value!r}")
    return value  # type: ignore[return-value]


def push(
    name: Annotated[str, typer.Argument(help="Recipe name whose build to publish (bare name or org/name).")],
    version: Annotated[str, typer.Argument(help="Semantic version, e.g. 1.2.0 (tagged v1.2.0).")],
    build: Annotated[str | None, typer.Option("--build", help="Build id (default: the LATEST build).")] = None,
    to: Annotated[str, typer.Option("--to", help="Registry backend: local or hub.")] = "local",
    repo: Annotated[str | None, typer.Option("--repo", help="Target repo org/name (default: $MEDCURATE_ORG/NAME).")] = None,
    private: Annotated[bool, typer.Option("--private", help="Create the Hub repo as private.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Publish even a build with no rows.")] = False,
    allow_partial: Annotated[bool, typer.Option("--allow-partial",
                                                help="Publish a --limit build (marked partial).")] = False,
    json_out: JsonFlag = False,
) -> None:
    """Publish a build (data, card, manifest, rejects, scores, report) as an immutable, tagged version."""
    build_name = name.split("/")[-1]
    result = registry.push(build_name, version, build=build, to=_backend(to) or "local",
                           repo=repo or (name if "/" in name else None), private=private, force=force,
                           allow_partial=allow_partial)
    if json_out:
        return emit_json(result)
    out.print(f"[green]pushed[/] {result.repo_id}@{result.tag} ({result.backend}, commit {result.commit[:12]}, "
              f"{len(result.files)} files)")
    out.print(f"  {result.location}")


def pull(
    ref: Annotated[str, typer.Argument(help="org/name@v1.2.0 (or @latest, @main, @<commit>).")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Copy the version's files into this folder.")] = None,
    source: Annotated[str | None, typer.Option("--from", help="local or hub (default: local if present).")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Fetch a version and verify every file's content hash."""
    r = registry.parse_ref(ref)
    dest = out_dir or Path(f"{r.name}-{r.revision or 'latest'}")
    snap = registry.pull(ref, out=dest, backend=_backend(source))
    m = snap.manifest
    if json_out:
        return emit_json({"repo_id": snap.repo_id, "revision": snap.revision, "commit": snap.commit,
                          "path": str(snap.path), "rows": m.get("rows_out"), "splits": m.get("splits") or {},
                          "files": sorted(str(p.relative_to(snap.path)) for p in snap.path.rglob("*")
                                          if p.is_file() and not p.name.startswith("."))})
    splits = ", ".join(f"{s} {n}" for s, n in (m.get("splits") or {}).items())
    out.print(f"[green]pulled[/] {snap.repo_id}@{snap.revision} (commit {snap.commit[:12]}): "
              f"{m.get('rows_out')} rows ({splits}), hashes verified")
    out.print(f"  {snap.path}")


def versions(
    name: Annotated[str, typer.Argument(help="Dataset name (bare name or org/name).")],
    source: Annotated[str | None, typer.Option("--from", help="local or hub (default: local if present).")] = None,
    json_out: JsonFlag = False,
) -> None:
    """List published versions: tag, date, rows per split, recipe hash, commit."""
    infos = registry.versions(name, backend=_backend(source))
    if json_out:
        return emit_json(infos)
    console = stdout_console()
    short = 12 if console.is_terminal else None  # piped: full ids, for scripts and `| cat`
    table = Table("tag", "published", "rows", "splits", "recipe sha256", "build", "commit", "partial",
                  title=name, title_justify="left")
    for v in infos:
        table.add_row(v.tag, v.created or "", str(v.rows), ", ".join(f"{s}={n}" for s, n in v.splits.items()),
                      (v.recipe_sha256 or "")[:short], v.build_id or "", v.commit[:short],
                      "partial" if v.partial else "")
    console.print(table)


def _short(value: object, width: int = 40) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def diff(
    name: Annotated[str, typer.Argument(help="Dataset name (bare name or org/name).")],
    old: Annotated[str, typer.Argument(help="Old version, e.g. v1.0.0.")],
    new: Annotated[str, typer.Argument(help="New version, e.g. v1.1.0.")],
    source: Annotated[str | None, typer.Option("--from", help="local or hub (default: local if present).")] = None,
    examples: Annotated[int, typer.Option(help="Ids to show per category.")] = 3,
    json_out: JsonFlag = False,
) -> None:
    """Rows added / removed / changed (by id) per split, and changed manifest fields."""
    d = registry.diff(name, old, new, backend=_backend(source))
    if json_out:
        return emit_json(d)
    out = stdout_console()
    table = Table("split", "rows old", "rows new", "added", "removed", "changed", "unchanged", "examples",
                  title=f"{d.repo_id}: {d.old} -> {d.new}")
    for s in d.splits:
        ex = [f"+{i}" for i in s.added[:examples]] + [f"-{i}" for i in s.removed[:examples]]
        ex += [f"~{o}->{n}" if o != n else f"~{o}" for o, n, _ in s.changed[:examples]]
        table.add_row(s.split, str(s.rows_old), str(s.rows_new), str(len(s.added)), str(len(s.removed)),
                      str(len(s.changed)), str(s.unchanged), " ".join(ex))
    out.print(table)
    for s in d.splits:
        if s.columns_added or s.columns_removed:
            out.print(f"{s.split}: columns added {s.columns_added or '-'}, removed {s.columns_removed or '-'}")
    if d.fields:
        fields = Table("manifest field", d.old, d.new, title="changed manifest fields")
        for path, a, b in d.fields:
            fields.add_row(escape(path), escape(_short(a)), escape(_short(b)))
        out.print(fields)
    else:
        out.print("manifest: no changed fields")


def register(app: typer.Typer) -> None:
    """Add push / pull / versions / diff to the `curate` app."""
    app.command("push")(push)
    app.command("pull")(pull)
    app.command("versions")(versions)
    app.command("diff")(diff)
