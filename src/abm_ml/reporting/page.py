"""What every report page shares: the Jinja2 environment, writing a page, embedding a chart.

Pages are self-contained: CSS inline, charts as base64 PNGs, nothing pointing at a URL. Values
from a CRM go through Jinja2's autoescaping, so an account called ``<script>`` is shown, never run.
"""

from __future__ import annotations

import base64
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from abm_ml.reporting.formatting import fmt_int, fmt_money, fmt_num, fmt_pct


@lru_cache(maxsize=1)
def _environment() -> Environment:
    # Built on first use, not at import: importing the module must not touch the file system.
    env = Environment(
        loader=FileSystemLoader(str(Path(__file__).with_name("templates"))),
        autoescape=select_autoescape(["html", "j2"], default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pct=fmt_pct, int=fmt_int, num=fmt_num, money=fmt_money)
    return env


def render(template: str, path: Path, **context: Any) -> Path:
    """Render ``template`` with ``context`` to ``path``; the caller asked for the file, so its
    parent folders are created."""
    html = _environment().get_template(template).render(**context)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path


def _data_uri(png: Path | bytes) -> str:
    """A PNG as a ``data:`` URI, so the page needs no file next to it."""
    data = png if isinstance(png, bytes) else Path(png).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def embed_chart(path: Path, title: str, alt: str, caption: str = "") -> dict[str, str]:
    """A chart for the templates: the PNG inlined, its title, alt text and caption."""
    return {"src": _data_uri(path), "title": title, "alt": alt, "caption": caption}
