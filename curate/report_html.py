"""report.html for every build: a self-contained page of plots, plus the same plots as PNGs for the card.

Plots: the funnel of rows per stage, rejects per stage and reason, question length per source and per
task, tokens per source (when a `*tokens*` column exists), template usage, a histogram of every numeric
side-car score, dedup cluster sizes; and the decontamination table.

Decisions:
- matplotlib's object API (`Figure`, no pyplot) renders PNGs with the Agg canvas: no display, no global
  state, safe in threads. The PNG bytes are written to `report/<plot>.png` (the dataset card links them;
  the Hub renders them) and embedded in the page as base64, so the page needs no network and no
  side files (a 1,000-row build gives ~8 plots, ~250 KB of page).
- No JavaScript libraries: one inline script marks each figure `data-rendered="yes"` once its image has
  decoded, which is what the headless-browser test checks.
- A plot with no data (no scores, no templates) is left out, and the page says why; `manifest.output.plots`
  lists the plots that exist, which is what the browser test expects to find.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

REPORT_DIR = "report"
_FIG = (7.5, 3.4)
_DPI = 100


def _figure(height: float = _FIG[1]):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(_FIG[0], height), dpi=_DPI, layout="constrained")
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _barh(labels: list[str], values: list[float], title: str, xlabel: str):
    fig = _figure(max(2.0, 0.32 * len(labels) + 1.0))
    ax = fig.add_subplot()
    ys = list(range(len(labels)))[::-1]
    ax.barh(ys, values, color="#4C78A8")
    ax.set_yticks(ys, labels)
    for y, v in zip(ys, values, strict=True):
        ax.annotate(f"{v:,.0f}", (v, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.margins(x=0.12)
    return fig


def plot_funnel(m: dict[str, Any], **_: Any):
    labels = ["sources read"] + [s["name"] for s in m["steps"]]
    values = [sum(s["rows"] for s in m["sources"])] + [s["rows_kept"] for s in m["steps"]]
    return _barh(labels, values, "Rows remaining after each stage", "rows")


def plot_reasons(m: dict[str, Any], **_: Any):
    pairs = [(f"source {s['name']}: {r}", n) for s in m["sources"] for r, n in (s.get("reasons") or {}).items()]
    pairs += [(f"{s['name']}: {r}", n) for s in m["steps"] for r, n in (s.get("reasons") or {}).items()]
    if not pairs:
        return None
    return _barh([p[0] for p in pairs], [p[1] for p in pairs], "Rejected rows by stage and reason", "rows")


#: Bins of every histogram (what `ax.hist(values, bins=30)` drew when the plots held the values).
BINS = 30
Frame = pl.DataFrame | pl.LazyFrame


def histograms(frame: Frame, value: pl.Expr, by: pl.Expr | None = None) -> list[tuple[Any, list[float], list[int]]]:
    """[(group, bin edges, counts)] of `value` per group of `by`, sorted by str(group): the bins and counts of
    `np.histogram(values, bins=BINS)` (what `ax.hist` draws; its index arithmetic and edge corrections in
    polars), counted in two passes over the (lazy) frame, so no column is held whole: the report of a 1M-row
    build used to read 1M question strings (~300 MB) to draw these. Nulls and non-finite values are left out."""
    lf = frame.lazy().select((by if by is not None else pl.lit("")).alias("_g"), value.cast(pl.Float64).alias("_v"))
    lf = lf.filter(pl.col("_v").is_finite())
    ranges = lf.group_by("_g").agg(pl.col("_v").min().alias("_lo"), pl.col("_v").max().alias("_hi")) \
        .collect(engine="streaming")
    if ranges.height == 0:
        return []
    flat = pl.col("_lo") == pl.col("_hi")  # numpy widens a constant to lo-0.5..hi+0.5
    ranges = ranges.with_columns(pl.when(flat).then(pl.col("_lo") - 0.5).otherwise("_lo").alias("_lo"),
                                 pl.when(flat).then(pl.col("_hi") + 0.5).otherwise("_hi").alias("_hi"))
    lo, hi, v = pl.col("_lo"), pl.col("_hi"), pl.col("_v")
    step = (hi - lo) / BINS

    def edge(i: pl.Expr) -> pl.Expr:  # np.linspace(lo, hi, BINS + 1)[i]
        return pl.when(i == BINS).then(hi).otherwise(i * step + lo)

    i = ((v - lo) / (hi - lo) * BINS).cast(pl.Int64)
    i = pl.when(i == BINS).then(i - 1).otherwise(i)
    i = pl.when(v < edge(i)).then(i - 1).otherwise(i)
    i = pl.when((v >= edge(i + 1)) & (i != BINS - 1)).then(i + 1).otherwise(i)
    counts = lf.join(ranges.lazy(), on="_g", how="inner").group_by("_g", i.alias("_b")).len() \
        .collect(engine="streaming")
    out = []
    for g, a, b in sorted(ranges.iter_rows(), key=lambda r: str(r[0])):
        c = [0] * BINS
        for k, n in counts.filter(pl.col("_g") == g).select("_b", "len").iter_rows():
            c[k] += n
        out.append((g, [float(x) for x in np.linspace(a, b, BINS + 1)], c))
    return out


def _draw(ax, edges: list[float], counts: list[int], **kw: Any) -> None:
    """`ax.hist` of pre-counted bins: the same bars as `ax.hist(values, bins=edges)`."""
    ax.hist(edges[:-1], bins=edges, weights=counts, **kw)


def _hist_by(data: Frame, by: str, ax, title: str) -> None:
    for key, edges, counts in histograms(data, pl.col("question").fill_null("").str.len_chars(),
                                         pl.col(by).fill_null("(none)")):
        _draw(ax, edges, counts, histtype="step", linewidth=1.4, label=f"{key} ({sum(counts):,})")
    ax.set_title(title)
    ax.set_xlabel("question length (characters)")
    ax.set_ylabel("rows")
    ax.legend(fontsize=7)


def _height(frame: Frame) -> int:
    return frame.height if isinstance(frame, pl.DataFrame) else frame.select(pl.len()).collect().item()


def plot_lengths(m: dict[str, Any], data: Frame, **_: Any):
    """`data`: the output rows (a lazy scan of the shards: only `source`, `task`, `question` are read)."""
    if "question" not in data.lazy().collect_schema().names() or _height(data) == 0:
        return None
    fig = _figure(3.6)
    left, right = fig.subplots(1, 2)
    _hist_by(data, "source", left, "per source")
    _hist_by(data, "task", right, "per task")
    return fig


def _token_columns(schema: pl.Schema) -> list[str]:
    return [c for c, t in schema.items() if "tokens" in c and t.is_numeric()]


def plot_tokens(m: dict[str, Any], data: Frame, scores: dict[str, Frame], **_: Any):
    frame = data.lazy()
    cols = _token_columns(frame.collect_schema())
    if not cols:
        for sc in scores.values():
            schema = sc.lazy().collect_schema()
            found = _token_columns(schema)
            if found and "id" in schema.names():
                frame = frame.select("id", "source").join(sc.lazy().select("id", *found), on="id", how="inner")
                cols = found
                break
    if not cols:
        return None
    sums = frame.group_by("source").agg(pl.sum(c) for c in cols).sort("source").collect(engine="streaming")
    if sums.height == 0:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    width = 0.8 / len(cols)
    for i, c in enumerate(cols):
        ax.bar([x + i * width for x in range(sums.height)], sums[c].to_list(), width, label=c)
    ax.set_xticks([x + width * (len(cols) - 1) / 2 for x in range(sums.height)], sums["source"].to_list())
    ax.set_title("Tokens per source")
    ax.set_ylabel("tokens")
    ax.legend(fontsize=8)
    return fig


def plot_templates(m: dict[str, Any], **_: Any):
    used: dict[str, int] = {}
    for s in m["steps"]:
        for k, n in ((s.get("stats") or {}).get("templates_used") or {}).items():
            used[k] = used.get(k, 0) + int(n)
    if not used:
        return None
    ordered = sorted(used.items(), key=lambda kv: (-kv[1], kv[0]))
    return _barh([k for k, _ in ordered], [v for _, v in ordered], "Template usage", "rows")


def plot_scores(m: dict[str, Any], scores: dict[str, Frame], **_: Any):
    """`scores`: each stage's side-car scores (lazy scans of `scores/<stage>.parquet`)."""
    panels = []
    for step, sc in sorted(scores.items()):
        for col, dtype in sc.lazy().collect_schema().items():
            if col != "id" and dtype.is_numeric():
                panels += [(step, col, edges, counts) for _, edges, counts in histograms(sc, pl.col(col))]
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig = _figure(2.6 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (step, col, edges, counts) in zip(axes, panels, strict=False):
        _draw(ax, edges, counts, color="#72B7B2")
        ax.set_title(f"{step}: {col}", fontsize=9)
        ax.set_ylabel("rows", fontsize=8)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return fig


def cluster_sizes(scores: Frame) -> pl.Series:
    """Sizes of the dedup clusters with more than one row. `dup_cluster` is the kept row's id (its own id when
    kept), so only clusters with a row whose id differs are counted: the group-by holds the duplicates' clusters,
    not one key per row."""
    lf = scores.lazy()
    if "id" in lf.collect_schema().names():
        lf = lf.join(lf.filter(pl.col("id") != pl.col("dup_cluster")).select("dup_cluster").unique(),
                     on="dup_cluster", how="semi")
    return lf.group_by("dup_cluster").len().filter(pl.col("len") > 1).select("len").collect(engine="streaming")["len"]


def plot_dedup_clusters(m: dict[str, Any], scores: dict[str, Frame], **_: Any):
    sc = scores.get("dedup")
    if sc is None or "dup_cluster" not in sc.lazy().collect_schema().names():
        return None
    sizes = cluster_sizes(sc)
    if sizes.len() == 0:
        return None
    counts = sizes.value_counts().sort(sizes.name)
    fig = _figure()
    ax = fig.add_subplot()
    ax.bar([str(v) for v in counts[sizes.name].to_list()], counts["count"].to_list(), color="#F58518")
    ax.set_title(f"Duplicate clusters by size ({sizes.len():,} clusters with duplicates)")
    ax.set_xlabel("rows in the cluster (kept row + its duplicates)")
    ax.set_ylabel("clusters")
    return fig


#: name -> (title, plot function); order is the page order.
PLOTS: dict[str, tuple[str, Callable[..., Any]]] = {
    "funnel": ("Funnel: rows per stage", plot_funnel),
    "reasons": ("Rejects by stage and reason", plot_reasons),
    "lengths": ("Question length per source and task", plot_lengths),
    "tokens": ("Tokens per source", plot_tokens),
    "templates": ("Template usage", plot_templates),
    "scores": ("Score histograms", plot_scores),
    "dedup_clusters": ("Dedup cluster sizes", plot_dedup_clusters),
}


def _decontamination_table(m: dict[str, Any]) -> str:
    rows = []
    for step in m["steps"]:
        for name, b in ((step.get("stats") or {}).get("benchmarks") or {}).items():
            rate = b.get("hit_rate")
            rows.append([name, "yes" if b.get("found", True) else "NOT FOUND", b.get("rows", ""),
                         b.get("checked", ""), b.get("hits", ""),
                         f"{rate:.2%}" if isinstance(rate, int | float) else ""])
    if not rows:
        return "<p>No decontamination step in this recipe.</p>"
    head = "".join(f"<th>{h}</th>" for h in ("benchmark", "found", "benchmark rows", "rows checked", "hits",
                                              "hit rate"))
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table id="decontamination"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


_STYLE = """body{font:14px/1.45 system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
figure{margin:1em 0}img{max-width:100%;height:auto}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}td:first-child,th:first-child{text-align:left}
.missing{color:#777}"""

_SCRIPT = """for (const f of document.querySelectorAll('figure.plot')) {
  const img = f.querySelector('img');
  const mark = () => { f.dataset.rendered = (img.complete && img.naturalWidth > 0) ? 'yes' : 'no'; };
  if (img.complete) { mark(); } else { img.addEventListener('load', mark); img.addEventListener('error', mark); }
}
document.body.dataset.plots = String(document.querySelectorAll('figure.plot').length);"""


def write_html_report(folder: Path, manifest: dict[str, Any], data: Frame, scores: dict[str, Frame]) -> list[str]:
    """Write `report/<plot>.png` and `report.html` into `folder`; return the PNG paths (relative). `data` and
    `scores` may be lazy (scans of the written files): each plot reads only the columns it aggregates."""
    (folder / REPORT_DIR).mkdir(exist_ok=True)
    figures, missing, written = [], [], []
    for name, (title, fn) in PLOTS.items():
        fig = fn(m=manifest, data=data, scores=scores)
        if fig is None:
            missing.append(title)
            continue
        png = _png(fig)
        rel = f"{REPORT_DIR}/{name}.png"
        (folder / rel).write_bytes(png)
        written.append(rel)
        b64 = base64.b64encode(png).decode()
        figures.append(f'<h2>{html.escape(title)}</h2><figure class="plot" id="plot-{name}">'
                       f'<img alt="{html.escape(title)}" src="data:image/png;base64,{b64}"></figure>')
    m = manifest
    name = html.escape(str(m["name"]))
    summary = (f"<p><b>{m['rows_in']:,}</b> rows in → <b>{m['rows_out']:,}</b> kept, "
               f"<b>{m['rows_rejected']:,}</b> rejected (every rejected row is in <code>rejects/</code> with its "
               f"step and reason). Recipe <code>{html.escape(m['recipe']['name'])}</code>, sha256 "
               f"<code>{m['recipe']['sha256'][:12]}</code>, seed {m['seed']}"
               + (f", limit {m['limit']}" if m.get("limit") else "") + ".</p>")
    absent = ("<p class=\"missing\">Not plotted (no data in this build): " + html.escape(", ".join(missing))
              + ".</p>") if missing else ""
    page = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Build report: {name}</title>"
            f"<style>{_STYLE}</style></head><body><h1>Build report: {name} "
            f"<code>{html.escape(str(m.get('build_id', '')))}</code></h1>{summary}{''.join(figures)}{absent}"
            f"<h2>Decontamination</h2>{_decontamination_table(m)}<script>{_SCRIPT}</script></body></html>\n")
    (folder / "report.html").write_text(page, encoding="utf-8")
    return written
