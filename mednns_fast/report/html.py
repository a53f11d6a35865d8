"""The HTML report: one self-contained file (figures embedded as data URIs, inline style, no network).

A report is a list of `Section`s, each with prose, tables and figures. The page carries a tiny script that,
once loaded, writes into `<body data-report-status=...>` how many figures failed to decode and which script
errors occurred, so a headless browser can check the page (`python_tests/test_report_browser.py`).
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Figure", "Section", "Table", "render_html"]


@dataclass
class Table:
    """A table: `columns` names and `rows` of cells (numbers are formatted with `digits` decimals)."""

    columns: Sequence[str]
    rows: Sequence[Sequence[object]]
    caption: str = ""
    digits: int = 3


@dataclass
class Figure:
    """A PNG figure from disk, embedded into the page."""

    path: Path
    caption: str = ""


@dataclass
class Section:
    title: str
    text: str = ""  # plain text paragraphs separated by blank lines
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #446; padding-bottom: .2em; }
h2 { margin-top: 2em; color: #335; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #bbb; padding: .3em .6em; text-align: right; }
th { background: #eef; } td:first-child, th:first-child { text-align: left; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: .3em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .9em; color: #555; }
.meta { color: #666; font-size: .9em; }
"""

# Reports its own health into the DOM: broken images and script errors (checked by the browser test).
_STATUS_SCRIPT = """
window.__reportErrors = [];
window.addEventListener('error', function (e) { window.__reportErrors.push(String(e.message)); });
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; }).length;
  document.body.setAttribute('data-report-status',
    'images=' + imgs.length + ';broken=' + broken + ';errors=' + window.__reportErrors.length);
});
"""


def _cell(value: object, digits: int) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(v, table.digits)}</td>" for v in row) + "</tr>" for row in table.rows
    )
    caption = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure_html(fig: Figure) -> str:
    data = base64.b64encode(Path(fig.path).read_bytes()).decode("ascii")
    alt = html.escape(fig.caption or Path(fig.path).stem)
    caption = f"<figcaption>{html.escape(fig.caption)}</figcaption>" if fig.caption else ""
    return f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">{caption}</figure>'


def _anchor(i: int) -> str:
    return f"s{i}"


def render_html(title: str, sections: Sequence[Section], path: str | os.PathLike, subtitle: str = "") -> Path:
    """Write the report to `path` (atomically) and return it."""
    from ..io import atomic_write_bytes

    nav = " ".join(f'<a href="#{_anchor(i)}">{html.escape(s.title)}</a>' for i, s in enumerate(sections))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>",
        f"<script>{_STATUS_SCRIPT}</script></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if subtitle:
        parts.append(f'<p class="meta">{html.escape(subtitle)}</p>')
    parts.append(f"<nav>{nav}</nav>")
    for i, section in enumerate(sections):
        parts.append(f'<section id="{_anchor(i)}"><h2>{html.escape(section.title)}</h2>')
        for para in filter(None, (p.strip() for p in section.text.split("\n\n"))):
            parts.append(f"<p>{html.escape(para)}</p>")
        parts.extend(_table_html(t) for t in section.tables)
        parts.extend(_figure_html(f) for f in section.figures)
        parts.append("</section>")
    parts.append("</body></html>")
    return atomic_write_bytes(path, "\n".join(parts).encode("utf-8"))
