"""The HTML report in a real browser: headless Chromium renders it, every figure decodes, no script errors;
and the checker itself notices a broken figure and a script error."""

from pathlib import Path

import pytest

from mednns_fast.report.html import Figure, Section, Table, render_html
from python_tests.support.browser import check_in_chromium, find_chromium


@pytest.fixture(scope="module")
def chromium():
    return find_chromium()  # fails loudly (FileNotFoundError naming the apt line) when missing


def _png(path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [1, 0, 2])
    fig.savefig(path)
    plt.close(fig)
    return path


def test_report_renders_with_every_figure_loaded(chromium, tmp_path):
    figs = [Figure(_png(tmp_path / f"f{i}.png"), f"figure {i}") for i in range(3)]
    sections = [
        Section("Numbers", "two paragraphs\n\nof text <b>escaped</b>", [Table(["a", "b"], [["x", 1.23456]])]),
        Section("Figures", figures=figs),
    ]
    page = render_html("Test report", sections, tmp_path / "report.html")
    text = page.read_text()
    assert "&lt;b&gt;escaped&lt;/b&gt;" in text and "1.235" in text
    assert "src=\"file:" not in text and "http" not in text  # self-contained
    status = check_in_chromium(page, tmp_path / "shot.png")
    assert (status.images, status.broken, status.errors) == (3, 0, 0)
    assert status.screenshot.stat().st_size > 1000


def test_checker_sees_broken_figures_and_script_errors(chromium, tmp_path):
    bad_png = tmp_path / "bad.png"
    bad_png.write_bytes(b"not a png")
    page = render_html("Broken", [Section("S", figures=[Figure(bad_png)])], tmp_path / "bad.html")
    page.write_text(page.read_text().replace("</body>", "<script>notDefinedAnywhere();</script></body>"))
    status = check_in_chromium(page, tmp_path / "shot.png")
    assert status.images == 1 and status.broken == 1 and status.errors == 1
