"""report.html of a real build: self-contained, every plot rendered in headless Chromium with no console
messages; the same plots are PNGs linked from the dataset card."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from curate.build import run_build

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def render(page: Path, profile: Path) -> tuple[str, list[str]]:
    """(DOM after scripts ran, console lines) of `page` in headless Chromium."""
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def real_build(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    mp = pytest.MonkeyPatch()
    mp.setenv("MEDCURATE_BENCHMARKS", str(data_dir))
    mp.setenv("MEDCURATE_BUILDS", str(root / "builds"))
    try:
        return run_build("medqa-sft", source_overrides={"medqa": str(data_dir / "medqa/train_subset1030.json")},
                         options={"work_dir": str(root / "work")}).path
    finally:
        mp.undo()


def test_report_is_self_contained_and_card_links_the_pngs(real_build: Path) -> None:
    manifest = json.loads((real_build / "manifest.json").read_text())
    plots = manifest["output"]["plots"]
    assert {"report/funnel.png", "report/reasons.png", "report/lengths.png", "report/templates.png",
            "report/scores.png", "report/dedup_clusters.png"} <= set(plots)
    page = (real_build / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched from a network
    assert page.count('src="data:image/png;base64,') == len(plots)
    card = (real_build / "README.md").read_text()
    for rel in plots:
        assert (real_build / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({rel})" in card
    assert 'id="decontamination"' in page and "medqa_test" in page


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's `chromium` (CI installs it: see .ci/run)")
def test_browser_renders_every_plot_without_console_errors(real_build: Path, tmp_path: Path) -> None:
    plots = json.loads((real_build / "manifest.json").read_text())["output"]["plots"]
    dom, console = render(real_build / "report.html", tmp_path / "profile")
    assert console == []
    assert re.search(rf'<body[^>]*data-plots="{len(plots)}"', dom), dom[:500]
    for rel in plots:
        name = Path(rel).stem
        assert re.search(rf'<figure class="plot" id="plot-{name}" data-rendered="yes">', dom), name
    # the check can fail: a broken image and a script error are both seen
    bad = tmp_path / "bad.html"
    bad.write_text(dom.replace('src="data:image/png;base64,', 'src="data:image/png;base64,AAAA', 1)
                   .replace("</body>", "<script>missingFunction()</script></body>"))
    dom_bad, console_bad = render(bad, tmp_path / "profile")
    assert any("missingFunction" in line for line in console_bad)
    assert 'data-rendered="no"' in dom_bad


def test_teacher_build_plots_tokens_per_source(data_dir: Path, work: Path, scripted_server) -> None:
    """A chain-of-thought build records tokens per row (scores/cot.parquet): the report plots them per source."""
    res = run_build("medqa-cot", source_overrides={"medqa": str(data_dir / "medqa/train_subset1030.json")},
                    limit=8, options={"teacher_url": [scripted_server.url], "teacher_model": "scripted"})
    plots = res.manifest["output"]["plots"]
    assert "report/tokens.png" in plots and "report/scores.png" in plots
    assert 'id="plot-tokens"' in (res.path / "report.html").read_text()
