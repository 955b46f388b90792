"""The HTML report of a ranking run: who to work first.

Summary cards per ABM tier, the ranked list with tiers, reasons and movement since the last run,
a chart of expected value by tier, the rows that could not be scored, and the model card.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from abm_ml.modeling.ranking import ABM_TIERS, NURTURE, RankResult
from abm_ml.reporting import plots
from abm_ml.reporting.formatting import fmt_int, fmt_money, fmt_pct, is_finite, markdown_to_html
from abm_ml.reporting.page import embed_chart, render

__all__ = ["ranking_report"]


def _reason_items(row: Mapping[str, Any]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Reasons raising (up) and lowering (down) the score, with their effect in points."""
    structured = row.get("reasons")
    if isinstance(structured, Mapping):

        def items(entries: list[Mapping[str, Any]]) -> list[dict[str, str]]:
            out = []
            for entry in entries:
                points = entry.get("probability_points")
                # A typographic minus: "-1.7" next to a hyphenated reason reads like a dash.
                effect = (
                    f"{float(points) * 100:+.1f} pts".replace("-", "\u2212")
                    if is_finite(points)
                    else ""
                )
                out.append(
                    {"text": str(entry.get("text", entry.get("feature", ""))), "effect": effect}
                )
            return out

        return items(list(structured.get("up", []))), items(list(structured.get("down", [])))

    # Only the CSV text survives (e.g. a ranking read back from disk): '+ a; + b' and '- c'.
    def parse(text: object, sign: str) -> list[dict[str, str]]:
        if not isinstance(text, str) or not text.strip():
            return []
        return [
            {"text": part.strip().removeprefix(sign).strip(), "effect": ""}
            for part in text.split(";")
            if part.strip()
        ]

    return parse(row.get("top_reasons"), "+"), parse(row.get("risk"), "-")


def _movement(value: object) -> dict[str, str] | None:
    """Movement since the last run, from the score-history module.

    A number is read as places climbed (positive) or dropped (negative); any other value (e.g.
    "new") is shown as it is.
    """
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return {"text": "\u2013", "kind": "flat", "label": "no previous rank"}
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        v = float(value)
        if v > 0:
            return {"text": f"\u25b2 {v:,.0f}", "kind": "up", "label": f"up {v:,.0f}"}
        if v < 0:
            return {"text": f"\u25bc {-v:,.0f}", "kind": "down", "label": f"down {-v:,.0f}"}
        return {"text": "=", "kind": "flat", "label": "unchanged"}
    text = str(value)
    kind = (
        "up"
        if text.startswith(("+", "\u25b2", "up"))
        else "down"
        if text.startswith(("-", "\u25bc", "down"))
        else "flat"
    )
    return {"text": text, "kind": kind, "label": text}


def _tier_class(tier: str) -> str:
    """CSS class of an ABM tier: '1:few' -> 't-1-few'."""
    return "t-" + re.sub(r"[^a-z0-9]+", "-", tier.lower()).strip("-")


def _reason_kind(reason: str) -> str:
    """Group unscorable reasons without the offending value ("unparseable value in 'x': abc")."""
    return reason.split(":", 1)[0].strip() if reason.startswith("unparseable value") else reason


def _ranked_rows(ranked: pd.DataFrame, top: int) -> list[dict[str, Any]]:
    rows = []
    has_movement = "movement" in ranked.columns
    for record in ranked.head(top).to_dict("records"):
        up, down = _reason_items(record)
        propensity = float(record.get("propensity", float("nan")))
        context = [
            str(record[c])
            for c in ("segment", "region", "owner")
            if c in record and not pd.isna(record[c])
        ]
        rows.append(
            {
                "rank": fmt_int(record.get("rank")),
                "account_id": str(record.get("account_id", "")),
                # Short ids stay on one line; only CRM ids too long for the column may wrap.
                "long_id": len(str(record.get("account_id", ""))) > 18,
                "context": " \u00b7 ".join(context),
                "abm_tier": str(record.get("abm_tier", "")),
                "abm_class": _tier_class(str(record.get("abm_tier", ""))),
                "tier": str(record.get("tier", "")),
                "propensity": fmt_pct(propensity, 0),
                "bar": max(0.0, min(100.0, propensity * 100)) if is_finite(propensity) else 0.0,
                "p50": fmt_int(record.get("days_to_close_p50")),
                "p10": fmt_int(record.get("days_to_close_p10")),
                "p90": fmt_int(record.get("days_to_close_p90")),
                "amount": fmt_money(record.get("amount")),
                "expected_value": fmt_money(record.get("expected_value")),
                "priority": fmt_int(record.get("priority")),
                "up": up,
                "down": down,
                "movement": _movement(record.get("movement")) if has_movement else None,
            }
        )
    return rows


def propensity_kinds(ranked: pd.DataFrame, meta: Mapping[str, Any]) -> list[dict[str, str]]:
    """Per ranked row (two-propensity rankings): which propensity ranks it, and the other one.

    Empty dicts when the ranking has one model only (no ``propensity_used`` column).
    """
    if "propensity_used" not in ranked.columns:
        return [{} for _ in range(len(ranked))]
    horizon = meta.get("horizon_days")
    buy = f"Propensity to buy within {horizon} days" if horizon else "Propensity to buy"
    out = []
    for used, win, other, priority in zip(
        ranked["propensity_used"],
        ranked["win_propensity"],
        ranked["buy_propensity"],
        ranked["priority"],
    ):
        # Priority is a propensity here, not a value per day: shown as one.
        row = {"priority": fmt_pct(priority, 0)}
        if used == "win":
            row |= {"kind": "Win propensity (open deal)", "other": f"buy {fmt_pct(other, 0)}"}
        else:
            row |= {"kind": buy, "other": "no open deal" if pd.isna(win) else ""}
        out.append(row)
    return out


def _tier_cards(ranked: pd.DataFrame, meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One summary card per ABM tier that has accounts or a declared capacity."""
    tiers = []
    for name in (*ABM_TIERS, NURTURE):
        part = ranked[ranked["abm_tier"] == name] if "abm_tier" in ranked else ranked.iloc[0:0]
        if len(part) or name in meta.get("tiers", {}):
            tiers.append(
                {
                    "name": name,
                    "class": _tier_class(name),
                    "count": len(part),
                    "capacity": meta.get("tiers", {}).get(name),
                    "expected_value": float(part["expected_value"].sum(min_count=1))
                    if "expected_value" in part
                    else float("nan"),
                    "mean_propensity": float(part["propensity"].mean())
                    if len(part) and "propensity" in part
                    else float("nan"),
                }
            )
    return tiers


def _unscorable_reasons(unscorable: pd.DataFrame) -> Counter:
    """Rows that could not be scored, counted by kind of reason."""
    return (
        Counter(_reason_kind(str(r)) for r in unscorable["reason"])
        if "reason" in unscorable
        else Counter()
    )


def _unscorable_rows(unscorable: pd.DataFrame) -> list[dict[str, str]]:
    """The first 50 rows that could not be scored: line, account and reason."""
    id_column = "account_id" if "account_id" in unscorable.columns else None
    return [
        {
            "line": fmt_int(r.get("line")) if "line" in r else "",
            "account_id": ""
            if id_column is None or pd.isna(r.get(id_column))
            else str(r[id_column]),
            "reason": str(r.get("reason", "")),
        }
        for r in unscorable.head(50).to_dict("records")
    ]


def _run_identity(ranked: pd.DataFrame, meta: Mapping[str, Any]) -> tuple[str, str, str]:
    """Model name, model version and as-of date of the ranking, from its metadata or its rows."""
    n = len(ranked)
    model_name = meta.get("model_name") or (
        str(ranked["model_name"].iloc[0]) if n and "model_name" in ranked else ""
    )
    model_version = meta.get("model_version") or (
        str(ranked["model_version"].iloc[0]) if n and "model_version" in ranked else ""
    )
    as_of = meta.get("as_of") or (str(ranked["as_of"].iloc[0]) if n and "as_of" in ranked else "")
    return model_name, model_version, as_of


def ranking_report(
    result: RankResult, path: Path, *, model_card_md: str | None = None, top: int = 200
) -> Path:
    """Write the HTML report of one ranking run.

    Args:
        result: The ranking (:func:`abm_ml.modeling.ranking.rank_accounts`).
        path: Where to write the ``.html`` file (parent folders are created).
        model_card_md: The model's card (markdown, as logged with the training run), rendered
            at the end.
        top: How many of the ranked accounts to list; the charts and cards cover all of them.

    Returns:
        ``path``.
    """
    ranked = result.ranked
    meta = dict(result.meta)
    n = len(ranked)
    tiers = _tier_cards(ranked, meta)
    unscorable = result.unscorable
    model_name, model_version, as_of = _run_identity(ranked, meta)
    chart = None
    if n:
        with tempfile.TemporaryDirectory(prefix="abm-ml-report-") as tmp:
            chart = embed_chart(
                plots.ranking_overview_plot(ranked, Path(tmp) / "overview.png"),
                "Expected value by ABM tier and propensity distribution",
                "Left: bar chart of the summed expected value of the accounts in each ABM tier, labelled with "
                "the number of accounts. Right: histogram of the accounts' propensity to buy.",
            )
    title = (
        "Account ranking"
        + (f": {model_name}" if model_name else "")
        + (f" v{model_version}" if model_version else "")
        + (f", {as_of}" if as_of else "")
    )
    return render(
        "ranking_report.html.j2",
        path,
        title=title,
        model_name=model_name,
        model_version=model_version,
        as_of=as_of,
        meta=meta,
        n_ranked=n,
        n_shown=min(n, top),
        # min_count: without amounts there is no expected value, not a total of 0.
        total_expected_value=float(ranked["expected_value"].sum(min_count=1))
        if "expected_value" in ranked
        else float("nan"),
        tiers=tiers,
        n_unscorable=len(unscorable),
        unscorable_reasons=_unscorable_reasons(unscorable).most_common(6),
        unscorable_rows=_unscorable_rows(unscorable),
        unscorable_has_line="line" in unscorable.columns,
        has_movement="movement" in ranked.columns,
        has_context=any(c in ranked.columns for c in ("segment", "region", "owner")),
        rows=[
            {**row, **kind}
            for row, kind in zip(
                _ranked_rows(ranked, top), propensity_kinds(ranked.head(top), meta)
            )
        ],
        chart=chart,
        card=markdown_to_html(model_card_md, heading_offset=1) if model_card_md else None,
    )
