"""Self-contained HTML pages: the report of a run and the service's page (styles, script and pictures inline).

Nothing on a page is fetched from the network: the renderer (``assets/jnd_view.js``) and the styles are inlined,
pictures are ``data:`` URLs, and the view data is a JSON block read by the script. Text from inputs (file names,
notes) reaches the page only through JSON and ``textContent``, never as HTML.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from sgjnd import __version__
from sgjnd.fileio import write_atomic

REPORT_NAME = "report.html"
"""The file a report directory gets."""

GENERATOR = f'<meta name="generator" content="sgjnd {__version__}">'
"""In the head of every page, so a later run knows a ``report.html`` is its own to replace."""


def asset(name: str) -> str:
    """The text of a packaged asset (``jnd_view.js``, ``jnd_view.css``, ``service.js``)."""
    return (resources.files("sgjnd.visual") / "assets" / name).read_text(encoding="utf-8")


CSP = ("default-src 'none'; img-src data: blob:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "connect-src 'self'")
"""The pages' content security policy: inline code and data/blob pictures only; requests only to their own origin
(the service page's API calls). Nothing can be loaded from the network."""


def _json_block(element_id: str, value: Any) -> str:
    # <, > and & as JSON escapes: no text in the data can end the script block or open a comment in it.
    text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _page(title: str, meta: str, body: str, data: Mapping[str, Any], script: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
{GENERATOR}
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>{html.escape(title)}</title>
<style>{asset("jnd_view.css")}</style></head>
<body><header class="page"><h1>{html.escape(title)}</h1><div class="meta">{html.escape(meta)}</div></header>
<main>{body}</main>
{_json_block("sgjnd-data", data)}
<script>{asset("jnd_view.js")}
{script}</script></body></html>
"""


_REPORT_SCRIPT = """
(function () {
  const data = JSON.parse(document.getElementById("sgjnd-data").textContent);
  const main = document.querySelector("main");
  for (const view of data.views) main.appendChild(sgjndRender(view));
  document.body.dataset.rendered = String(data.views.length);
})();
"""


def _summary_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(
            f'<td class="num">{html.escape(str(c))}</td>' if isinstance(c, int | float) else
            f"<td>{html.escape('-' if c is None else str(c))}</td>"
            for c in row
        ) + "</tr>"
        for row in rows
    )
    return f'<table class="summary"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def report_html(views: Sequence[Mapping[str, Any]], *, title: str, meta: str,
                summary: tuple[Sequence[str], Sequence[Sequence[Any]]] | None = None) -> str:
    """A report page: an optional summary table, then one view per image.

    Args:
        views: view data (:func:`sgjnd.visual.views.image_view`).
        title: the page title.
        meta: one line under the title (model, backend, weights, date).
        summary: (header, rows) of a table shown above the views.
    """
    table = _summary_table(summary[1], summary[0]) if summary else ""
    return _page(title, meta, table, {"views": list(views)}, _REPORT_SCRIPT)


def write_report(directory: Path, page: str) -> Path:
    """Write ``page`` as ``directory/report.html`` (atomically; the directory is created).

    Raises:
        OSError: the directory cannot be created or written.
    """
    path = Path(directory) / REPORT_NAME
    write_atomic(path, page.encode("utf-8"))
    return path


def service_page(settings: Mapping[str, Any]) -> str:
    """The service's page: drop a photo, see its JND view, download the compressed JPEG.

    Args:
        settings: what the script needs: ``token_required``, ``max_body_bytes``, ``max_pixels``, ``patch_size``,
            ``threshold``, ``below_steps``, ``model``, ``backend``.
    """
    body = """
<section class="sgjnd-card">
  <div class="drop" id="drop" tabindex="0">Drop a photo here, or click to choose one
    <input type="file" id="file" accept="image/*" hidden></div>
  <div class="controls">
    <label id="token-box" hidden>Bearer token <input type="password" id="token" autocomplete="off"></label>
    <span class="muted" id="limits"></span>
  </div>
  <div class="status" id="status" role="status"></div>
  <div id="download"></div>
</section>
<div id="result"></div>"""
    meta = f"sgjnd {__version__} service: {settings.get('model', '?')} on {settings.get('backend', '?')}"
    return _page("JND of a photo", meta, body, dict(settings), asset("service.js"))
