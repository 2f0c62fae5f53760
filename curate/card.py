"""Dataset cards rendered from a build manifest (``cards/dataset_card.md.j2``).

Every value in a card comes from the manifest: the YAML header the Hub reads (licence, languages,
task categories, size category from the real row count, configs with data files, split sizes) and the
provenance sections (recipe, sources, teacher, step funnel, decontamination, dedup parameters).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jinja2
import yaml

from curate.resources import cards_dir

#: The Hub's size buckets (upper bound exclusive, label).
SIZE_BUCKETS: tuple[tuple[float, str], ...] = (
    (1e3, "n<1K"),
    (1e4, "1K<n<10K"),
    (1e5, "10K<n<100K"),
    (1e6, "100K<n<1M"),
    (1e7, "1M<n<10M"),
    (1e8, "10M<n<100M"),
    (1e9, "100M<n<1B"),
    (1e10, "1B<n<10B"),
    (1e11, "10B<n<100B"),
    (1e12, "100B<n<1T"),
)

#: Key names that hold secrets: `token`, `hf_token`, `api_key`, `client_secret`, ... (whole words, so that
#: `max_tokens` or `min_short_tokens` are not mistaken for one).
_SECRET_KEY = re.compile(
    r"(?:^|[_-])(?:token|secret|password|passwd|api[_-]?key|authorization|credentials?)$", re.I
)
_SPLIT_FILE = re.compile(r"^data/(?P<split>.+?)-\d{5}-of-\d{5}\.parquet$")


def size_category(rows: int) -> str:
    """The Hub's `size_categories` label for a row count (``n<1K``, ``1K<n<10K``, ..., ``n>1T``)."""
    for upper, label in SIZE_BUCKETS:
        if rows < upper:
            return label
    return "n>1T"


def redact(obj: Any) -> Any:
    """Copy of `obj` with values under secret-looking keys (token, api_key, password, ...) replaced."""
    if isinstance(obj, Mapping):
        return {k: ("***" if _SECRET_KEY.search(str(k)) and v else redact(v)) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact(v) for v in obj]
    return obj


def split_files(manifest: Mapping[str, Any]) -> dict[str, list[str]]:
    """Split name -> data files (repo-relative), from ``manifest.output.files``."""
    out: dict[str, list[str]] = {}
    for f in (manifest.get("output") or {}).get("files") or []:
        m = _SPLIT_FILE.match(f)
        split = m["split"] if m else "train"
        out.setdefault(split, []).append(f)
    return out


def split_rows(manifest: Mapping[str, Any]) -> dict[str, int]:
    """Split name -> row count: ``manifest.splits`` or, failing that, all rows in one train split."""
    splits = manifest.get("splits")
    if splits:
        return {str(k): int(v) for k, v in splits.items()}
    return {"train": int(manifest.get("rows_out") or 0)}


def default_repo_id(manifest: Mapping[str, Any]) -> str:
    from curate.registry.refs import default_org

    return f"{default_org()}/{manifest.get('name') or manifest['recipe']['name']}"


def data_sizes(folder: Path, manifest: Mapping[str, Any]) -> tuple[dict[str, int], int]:
    """(split -> uncompressed bytes from the parquet footers, total parquet file bytes) of a version folder."""
    import pyarrow.parquet as pq

    split_bytes: dict[str, int] = {}
    download = 0
    for split, files in split_files(manifest).items():
        for rel in files:
            meta = pq.ParquetFile(folder / rel).metadata
            split_bytes[split] = split_bytes.get(split, 0) + sum(
                meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            download += (folder / rel).stat().st_size
    return split_bytes, download


def card_header(manifest: Mapping[str, Any], data_dir: Path | None = None) -> dict[str, Any]:
    """The YAML metadata block of the card, as a dict (keys the Hub understands).

    With `data_dir` (the folder holding ``data/``), ``dataset_info`` also gets ``num_bytes`` per split,
    ``download_size`` and ``dataset_size``, read from the parquet files.
    """
    recipe = manifest.get("recipe") or {}
    rows = split_rows(manifest)
    files = split_files(manifest)
    header: dict[str, Any] = {}
    if recipe.get("license"):
        header["license"] = recipe["license"]
    if recipe.get("language"):
        header["language"] = list(recipe["language"])
    if recipe.get("task_categories"):
        header["task_categories"] = list(recipe["task_categories"])
    header["size_categories"] = [size_category(sum(rows.values()))]
    header["pretty_name"] = recipe.get("pretty_name") or manifest.get("name") or recipe.get("name")
    if recipe.get("tags"):
        header["tags"] = list(recipe["tags"])
    header["configs"] = [
        {
            "config_name": "default",
            "data_files": [{"split": s, "path": f"data/{s}-*"} for s in (files or rows)],
        }
    ]
    info: dict[str, Any] = {"config_name": "default"}
    if data_dir is not None:
        sizes, download = data_sizes(data_dir, manifest)
        info["splits"] = [{"name": s, "num_bytes": sizes.get(s, 0), "num_examples": n} for s, n in rows.items()]
        info["download_size"] = download
        info["dataset_size"] = sum(sizes.values())
    else:
        info["splits"] = [{"name": s, "num_examples": n} for s, n in rows.items()]
    header["dataset_info"] = info
    return header


def _top_reasons(reasons: Mapping[str, int] | None, k: int = 3) -> str:
    if not reasons:
        return ""
    top = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    more = len(reasons) - len(top)
    return ", ".join(f"{r} ({n})" for r, n in top) + (f", +{more} more" if more > 0 else "")


def _scalars(d: Mapping[str, Any] | None, skip: Iterable[str] = ()) -> list[tuple[str, Any]]:
    """Flatten a params/stats dict into (dotted key, scalar) pairs for a bullet list."""
    out: list[tuple[str, Any]] = []
    skip = set(skip)
    for k, v in (d or {}).items():
        if k in skip:
            continue
        if isinstance(v, Mapping):
            out.extend((f"{k}.{kk}", vv) for kk, vv in _scalars(v))
        elif isinstance(v, list) and len(v) > 8:
            out.append((k, f"{len(v)} items"))
        else:
            out.append((k, v))
    return out


def _steps_named(manifest: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    return [s for s in manifest.get("steps") or [] if s.get("name") == name]


def _rephrase_column(m: Mapping[str, Any], decont: list[dict[str, Any]]) -> str | None:
    """Add the rephrase pass's hits to the n-gram table's rows; a note on how it ran (or why it did not)."""
    steps = _steps_named(m, "decontaminate_rephrase")
    for row in decont:
        row["rephrased"] = "—"
    if not steps:
        return None
    stats = steps[-1].get("stats") or {}
    if stats.get("skipped"):
        for row in decont:
            row["rephrased"] = "skipped"
        return f"**skipped**: {stats['skipped']}"
    table = stats.get("benchmarks") or {}
    for row in decont:
        if row["name"] in table:
            row["rephrased"] = table[row["name"]].get("rephrased_hits", 0)
    judge = (stats.get("teacher") or {}).get("model")
    return (f"BM25 top-{stats.get('top_k')} candidates (min_rel {stats.get('min_rel')}) judged by `{judge}`; "
            f"{stats.get('rows_judged')} of {stats.get('rows_checked')} rows judged, "
            f"{stats.get('rephrased_hits')} rejected (`rejects/decontaminate_rephrase.parquet`).")


def card_context(manifest: Mapping[str, Any], data_dir: Path | None = None) -> dict[str, Any]:
    """Everything the template needs, derived from the manifest (and sizes from `data_dir`)."""
    m = redact(dict(manifest))
    recipe = m.get("recipe") or {}
    release = m.get("release")
    repo_id = (release or {}).get("repo") or default_repo_id(m)
    revision = (release or {}).get("tag") or "<version>"
    steps = [dict(s, top_reasons=_top_reasons(s.get("reasons"))) for s in m.get("steps") or []]
    decont = []
    decont_params: list[tuple[str, Any]] = []
    for step in _steps_named(m, "decontaminate"):
        for name, b in ((step.get("stats") or {}).get("benchmarks") or {}).items():
            rate = b.get("hit_rate")
            decont.append({
                "name": name, "rows": b.get("rows"), "checked": b.get("checked"), "hits": b.get("hits"),
                "hit_rate": f"{rate:.2%}" if isinstance(rate, int | float) else (rate if rate is not None else "—"),
                "found": "yes" if b.get("found", True) else f"**not found**: {b.get('note') or 'no file'}",
            })
        decont_params = _scalars(step.get("params"))
    rephrase_note = _rephrase_column(m, decont)
    dedup: list[tuple[str, Any]] = []
    for step in _steps_named(m, "dedup"):
        dedup = [(f"param {k}", v) for k, v in _scalars(step.get("params"))]
        dedup += [(f"stat {k}", v) for k, v in _scalars(step.get("stats"))]
    teacher = m.get("teacher") or None
    return {
        "m": _Attr(m),
        "header": yaml.safe_dump(card_header(m, data_dir), sort_keys=False, allow_unicode=True, width=1000),
        "title": recipe.get("pretty_name") or m.get("name") or recipe.get("name"),
        "description": recipe.get("description") or "",
        "recipe_file": Path(recipe["path"]).name if recipe.get("path") else None,  # no local paths in cards
        "release": _Attr(release) if release else None,
        "repo_id": repo_id,
        "revision": revision,
        "splits": split_rows(m),
        "rows_out": m.get("rows_out"),
        "columns": (m.get("output") or {}).get("columns") or [],
        "versions": m.get("versions") or {},
        "sources": [_Attr(s) for s in m.get("sources") or []],
        "teacher": _Attr(teacher) if teacher else None,
        "teacher_params": _scalars((teacher or {}).get("params")),
        "steps": steps,
        "decontamination": decont,
        "rephrase_note": rephrase_note,
        "decontamination_params": decont_params,
        "dedup": dedup,
        "license": recipe.get("license") or "unknown",
    }


class _Attr(dict):
    """dict whose missing keys read as None in templates (``m.recipe.path`` on an old manifest)."""

    def __getattr__(self, key: str) -> Any:
        value = self.get(key)
        return _Attr(value) if isinstance(value, dict) and not isinstance(value, _Attr) else value


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(cards_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
        autoescape=False,
    )


def render_dataset_card(manifest: Mapping[str, Any], data_dir: Path | None = None) -> str:
    """Render ``cards/dataset_card.md.j2`` for a build manifest.

    `data_dir` is the build/version folder holding ``data/``; when given, split byte sizes are added
    to the YAML header (``datasets`` wants ``num_bytes`` beside ``num_examples``).

    When ``manifest["release"]`` (``{"repo", "version", "tag", "pushed"}``, added by the registry on
    push) is present, the usage snippet names that repo and tag; otherwise it shows a placeholder.
    """
    text = _environment().get_template("dataset_card.md.j2").render(**card_context(manifest, data_dir))
    return re.sub(r"\n{3,}", "\n\n", text)


def parse_card_header(card: str) -> dict[str, Any]:
    """The YAML header of a card (between the leading ``---`` lines) as a dict."""
    if not card.startswith("---\n"):
        raise ValueError("card has no YAML header")
    end = card.index("\n---\n", 4)
    return yaml.safe_load(card[4:end]) or {}
