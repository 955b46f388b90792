"""Text for humans in the reports: numbers, timestamps and the markdown subset of the model card.

Missing or non-finite values show as an en dash; percentages carry a no-break space so the sign
never wraps alone. :func:`markdown_to_html` escapes everything before adding its few tags.
"""

from __future__ import annotations

import math
import re

import pandas as pd
from markupsafe import Markup, escape


def is_finite(value: object) -> bool:
    """True for a finite number (or numeric text); False for None, NaN, infinities and text."""
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def fmt_pct(value: object, digits: int = 1) -> str:
    """0.4231 -> '42.3 %' (no-break space, so the sign never wraps alone); missing -> an en dash."""
    return f"{float(value) * 100:.{digits}f}\u00a0%" if is_finite(value) else "\u2013"


def fmt_int(value: object) -> str:
    """1234.4 -> '1,234'."""
    return f"{float(value):,.0f}" if is_finite(value) else "\u2013"


def fmt_num(value: object, digits: int = 3) -> str:
    """A metric value with a fixed number of decimals (the precision of the model card)."""
    return f"{float(value):.{digits}f}" if is_finite(value) else "\u2013"


def fmt_money(value: object) -> str:
    """Amounts carry no currency in the data, so only thousands separators: '1,234,567'."""
    return fmt_int(value)


def fmt_timestamp(value: object) -> str:
    """ISO timestamp -> '2026-11-24 00:15 UTC'; anything unparseable is shown as given."""
    if not value:
        return ""
    try:
        stamp = pd.Timestamp(str(value))
    except (ValueError, TypeError):
        return str(value)
    if stamp.tzinfo is not None:
        return stamp.tz_convert("UTC").strftime("%Y-%m-%d %H:%M UTC")
    return stamp.strftime("%Y-%m-%d %H:%M")


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")
_ORDERED = re.compile(r"^\d+\.\s+")


def _inline(text: str) -> str:
    # Escape first, then add tags: markup in the source text can never become HTML.
    out = str(escape(text))
    out = _CODE.sub(r"<code>\1</code>", out)
    return _BOLD.sub(r"<strong>\1</strong>", out)


def _table_cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def markdown_to_html(text: str, *, heading_offset: int = 0) -> Markup:
    """Render the markdown subset of the model card: headings, paragraphs, lists, tables.

    Covers what :func:`abm_ml.registry.card.model_card` emits (``#`` headings, ``**bold**``,
    ```code```, ``-`` and ``1.`` lists, pipe tables) without adding a dependency. Everything
    is HTML-escaped before the few tags are added.

    Args:
        text: Markdown source.
        heading_offset: Added to each heading level, so a card's ``#`` fits under the page's
            own headings (capped at ``h6``).

    Returns:
        Safe HTML for a Jinja2 template.
    """
    lines = text.splitlines()
    html: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        stripped = line.strip()
        if not stripped:
            i += 1
            continue
        if stripped.startswith("#"):
            hashes = len(stripped) - len(stripped.lstrip("#"))
            level = min(6, hashes + heading_offset)
            html.append(f"<h{level}>{_inline(stripped[hashes:].strip())}</h{level}>")
            i += 1
        elif stripped.startswith("|"):
            block = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                block.append(lines[i])
                i += 1
            # The |---|---| rule only separates the header; it carries no content.
            rows = [_table_cells(r) for r in block if not set(r.strip()) <= set("|-: ")]
            head, body = rows[0], rows[1:]
            html.append('<div class="table-wrap"><table class="card-table"><thead><tr>')
            html.extend(f'<th scope="col">{_inline(c)}</th>' for c in head)
            html.append("</tr></thead><tbody>")
            for row in body:
                html.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>")
            html.append("</tbody></table></div>")
        elif stripped.startswith(("- ", "* ")) or _ORDERED.match(stripped):
            ordered = bool(_ORDERED.match(stripped))
            tag = "ol" if ordered else "ul"
            items = []
            while i < len(lines):
                item = lines[i].strip()
                if ordered and _ORDERED.match(item):
                    items.append(_ORDERED.sub("", item, count=1))
                elif not ordered and item.startswith(("- ", "* ")):
                    items.append(item[2:])
                else:
                    break
                i += 1
            html.append(
                f"<{tag}>" + "".join(f"<li>{_inline(it)}</li>" for it in items) + f"</{tag}>"
            )
        else:
            para = []
            while (
                i < len(lines)
                and lines[i].strip()
                and not lines[i].strip().startswith(("#", "|", "- ", "* "))
                and not _ORDERED.match(lines[i].strip())
            ):
                para.append(lines[i].strip())
                i += 1
            html.append(f"<p>{_inline(' '.join(para))}</p>")
    return Markup("\n".join(html))
