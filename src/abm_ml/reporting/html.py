"""Self-contained HTML reports of a training run and of a ranking run.

Each report is one HTML file that opens anywhere, offline and years later: the CSS is inline,
charts are base64 PNGs made by :mod:`abm_ml.reporting.plots`, and nothing points at a URL. Values that come
from a CRM (account ids, category names, reasons built from them) go through Jinja2's
autoescaping, so an account called ``<script>`` is shown, never run.

* :func:`training_report` - the model card as a page: data, split, metrics with intervals next
  to the baselines, calibration / gains / velocity / SHAP charts, and a capacity analysis
  ("working the top 50 accounts would have reached X % of won revenue").
* :func:`ranking_report` - who to work first: summary cards per ABM tier, the ranked list with
  tiers and reasons, a chart of expected value by tier, and the model card.
"""

from __future__ import annotations

import base64
import math
import re
import tempfile
from collections import Counter
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from abm_ml.modeling import metrics as m
from abm_ml.modeling.ranking import ABM_TIERS, NURTURE, RankResult
from abm_ml.modeling.train import MODEL_NAME, TrainingResult
from abm_ml.registry.card import model_card, verdict
from abm_ml.reporting import plots
from abm_ml.schema import AMOUNT, DAYS_TO_CLOSE, OUTCOME, WON

__all__ = ["capacity_analysis", "markdown_to_html", "ranking_report", "training_report"]

CAPACITIES = (10, 50, 100, 500)
"""Team capacities (accounts worked) of the capacity analysis, next to 10 % of the holdout."""
BASELINES = ("logistic_regression", "rule_based_fit")
MODEL_LABELS = {
    MODEL_NAME: "abm-ml (this model)",
    "logistic_regression": "Logistic regression",
    "rule_based_fit": "Rule-based fit score",
    "median_days_baseline": "Median days (baseline)",
}
METRIC_LABELS = {
    "roc_auc": ("ROC AUC", "chance of ranking a won deal above a lost one; 0.5 is chance"),
    "pr_auc": ("PR AUC", "average precision; compare with the base rate"),
    "brier": ("Brier score", "mean squared error of the probabilities"),
    "log_loss": ("Log loss", "penalises confident misses"),
    "ece": ("Calibration error (ECE)", "gap between predicted and observed win rates"),
    "lift_top_decile": ("Lift, top 10 %", "win rate in the top decile over the base rate"),
    "precision_at_k": ("Precision at k", "share of the top k that were won"),
    "recall_at_k": ("Recall at k", "share of all wins found in the top k"),
    "won_amount_captured_top_k": ("Won revenue in top k", "share of the won amount in the top k"),
    "base_rate": ("Base rate", "share of holdout deals won"),
    "n": ("Deals", "rows evaluated"),
    "n_won": ("Won deals", "wins among them"),
    "k": ("Capacity k", "accounts a team can work"),
    "mae_days": ("Mean absolute error", "days between predicted P50 and the actual close"),
    "median_ape": ("Median relative error", "median of |error| / actual days"),
    "coverage_p10_p90": (
        "P10-P90 coverage",
        "share of deals closing inside the interval; target 0.80",
    ),
    "interval_width_days": ("P10-P90 width", "median width of the interval in days"),
    "baseline_mae_days": ("Baseline MAE", "days, median-days forecast on the same deals"),
    "mae_improvement": ("MAE improvement", "1 - MAE / baseline MAE"),
}
EXTRA_LABELS = {
    "velocity_c_index": "C-index, quantile model (open deals censored)",
    "velocity_aft_c_index": "C-index, log-normal AFT comparison",
    "velocity_aft_mae_days": "MAE of the AFT comparison (days)",
}


# ---------------------------------------------------------------------------------------------
# Formatting: numbers for humans
# ---------------------------------------------------------------------------------------------


def _finite(value: object) -> bool:
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def fmt_pct(value: object, digits: int = 1) -> str:
    """0.4231 -> '42.3 %' (no-break space, so the sign never wraps alone); missing -> an en dash."""
    return f"{float(value) * 100:.{digits}f}\u00a0%" if _finite(value) else "\u2013"


def fmt_int(value: object) -> str:
    """1234.4 -> '1,234'."""
    return f"{float(value):,.0f}" if _finite(value) else "\u2013"


def fmt_num(value: object, digits: int = 3) -> str:
    """A metric value with a fixed number of decimals (the precision of the model card)."""
    return f"{float(value):.{digits}f}" if _finite(value) else "\u2013"


def fmt_money(value: object) -> str:
    """Amounts carry no currency in the data, so only thousands separators: '1,234,567'."""
    return fmt_int(value)


def _timestamp(value: object) -> str:
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


def _metric_cell(metric: m.Metric) -> dict[str, str]:
    """Value and interval as separate strings, so the template can style the interval quieter."""
    if metric.low == metric.value == metric.high:
        value = fmt_int(metric.value) if float(metric.value).is_integer() else fmt_num(metric.value)
        return {"value": value, "interval": ""}
    interval = (
        f"[{fmt_num(metric.low)}, {fmt_num(metric.high)}]"
        if _finite(metric.low)
        else "[no interval]"
    )
    return {"value": fmt_num(metric.value), "interval": interval}


# ---------------------------------------------------------------------------------------------
# Markdown (the subset card.py writes) -> HTML
# ---------------------------------------------------------------------------------------------

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

    Covers what :func:`abm_ml.card.model_card` emits (``#`` headings, ``**bold**``,
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


# ---------------------------------------------------------------------------------------------
# Templates and charts
# ---------------------------------------------------------------------------------------------


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


def _render(template: str, path: Path, **context: Any) -> Path:
    html = _environment().get_template(template).render(**context)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path


def _data_uri(png: Path | bytes) -> str:
    data = png if isinstance(png, bytes) else Path(png).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _chart(path: Path, title: str, alt: str, caption: str = "") -> dict[str, str]:
    return {"src": _data_uri(path), "title": title, "alt": alt, "caption": caption}


# ---------------------------------------------------------------------------------------------
# Training report
# ---------------------------------------------------------------------------------------------


def _metric_rows(named: Mapping[str, Mapping[str, m.Metric]]) -> list[dict[str, Any]]:
    """One row per metric, one cell per model, the best model's cell marked."""
    names: list[str] = []
    for metrics in named.values():
        names.extend(n for n in metrics if n not in names)
    rows = []
    for name in names:
        values = {model: metrics[name].value for model, metrics in named.items() if name in metrics}
        finite = {k: v for k, v in values.items() if _finite(v)}
        best: set[str] = set()
        # Only a comparison across models can have a winner; a lone value is just a value.
        sign = m.direction(name)
        if len(finite) > 1 and sign:
            target = max(finite.values()) if sign > 0 else min(finite.values())
            best = {k for k, v in finite.items() if v == target}
        label, help_text = METRIC_LABELS.get(name, (name.replace("_", " "), ""))
        direction = {1: "higher is better", -1: "lower is better"}.get(sign, "")
        cells = [
            {
                "model": model,
                "best": model in best,
                **(
                    _metric_cell(metrics[name])
                    if name in metrics
                    else {"value": "", "interval": ""}
                ),
            }
            for model, metrics in named.items()
        ]
        rows.append(
            {"key": name, "label": label, "help": help_text, "direction": direction, "cells": cells}
        )
    return rows


def _holdout_amounts(result: TrainingResult) -> np.ndarray | None:
    """Deal amounts of the holdout rows, or None when any is unknown (then wins are counted)."""
    amounts = pd.to_numeric(result.holdout[AMOUNT], errors="coerce").to_numpy(dtype=float)
    won = result.holdout_predictions["won"].to_numpy() == 1
    if not np.isfinite(amounts).all() or not (amounts[won] > 0).any():
        return None
    return amounts


def capacity_analysis(
    result: TrainingResult, capacities: tuple[int, ...] = CAPACITIES
) -> dict[str, Any]:
    """What working the top k holdout accounts by score would have reached, model vs baselines.

    Capacities are capped at the holdout size and joined by 10 % of the holdout (the default
    ``k`` of the metrics). Won revenue is the measure when every holdout deal has an amount,
    otherwise wins. Random picking reaches ``k / n`` of either in expectation.

    Returns:
        ``measure`` ("won revenue" or "wins"), ``n``, ``rows`` (one per capacity, with shares
        for the model, the baselines and random picking) and ``sentences``.
    """
    predictions = result.holdout_predictions
    y = predictions["won"].to_numpy().astype(int)
    n = len(y)
    amounts = _holdout_amounts(result)
    decile = max(1, -(-n // 10))
    ks = sorted({min(int(c), n) for c in capacities} | {decile})
    tables = {
        name: m.capacity_table(y, predictions[name].to_numpy(dtype=float), ks, amounts=amounts)
        for name in (MODEL_NAME, *BASELINES)
        if name in predictions
    }
    share_column = "share_of_won_amount" if amounts is not None else "share_of_wins"
    main = tables[MODEL_NAME]
    rows = []
    for j, k in enumerate(ks):
        random_share = k / n
        rows.append(
            {
                "k": k,
                "label": f"all {n:,}"
                if k == n
                else f"top {k:,}" + (" (10 % of holdout)" if k == decile else ""),
                "share": float(main[share_column].iloc[j]),
                "share_of_wins": float(main["share_of_wins"].iloc[j]),
                "wins": float(main["wins_reached"].iloc[j]),
                "precision": float(main["precision"].iloc[j]),
                "baselines": {
                    name: float(t[share_column].iloc[j])
                    for name, t in tables.items()
                    if name != MODEL_NAME
                },
                "random": random_share,
            }
        )
    sentences = []
    for row in rows:
        # Working every account reaches everything; that row stays in the table, not the prose.
        if row["k"] == n and len(rows) > 1:
            continue
        if amounts is not None:
            sentences.append(
                f"Working the top {row['k']:,} accounts would have reached {fmt_pct(row['share'])} of won revenue "
                f"({fmt_pct(row['share_of_wins'])} of wins); random picking would reach about {fmt_pct(row['random'])}."
            )
        else:
            sentences.append(
                f"Working the top {row['k']:,} accounts would have reached {fmt_pct(row['share'])} of wins; "
                f"random picking would reach about {fmt_pct(row['random'])}."
            )
    return {
        "measure": "won revenue" if amounts is not None else "wins",
        "n": n,
        "n_won": int(y.sum()),
        "won_amount": float(np.sum(amounts[y == 1])) if amounts is not None else None,
        "rows": rows,
        "sentences": sentences,
        "baselines": [name for name in tables if name != MODEL_NAME],
    }


def _training_charts(
    result: TrainingResult, amounts: np.ndarray | None, directory: Path
) -> dict[str, list[dict[str, str]]]:
    """Render the run's charts with the plot functions MLflow logs, and embed them."""
    predictions = result.holdout_predictions
    y = predictions["won"].to_numpy().astype(int)
    models = {
        name: predictions[name].to_numpy(dtype=float)
        for name in (MODEL_NAME, *BASELINES)
        if name in predictions
    }
    charts: dict[str, list[dict[str, str]]] = {"propensity": [], "velocity": [], "shap": []}
    charts["propensity"].append(
        _chart(
            plots.calibration_plot(y, models, directory / "calibration.png"),
            "Calibration",
            "Predicted win probability against the observed win rate per decile of the holdout, "
            "for the model and the baselines; points on the diagonal are well calibrated.",
            "Points on the dashed diagonal mean a 30 % score wins about 30 % of the time. Bars are 95 % intervals.",
        )
    )
    charts["propensity"].append(
        _chart(
            plots.gains_plot(y, models, directory / "gains.png", amounts),
            "Cumulative gains",
            "Share of wins reached against the share of holdout accounts worked in score order, "
            "for the model, the baselines and random picking.",
            "The higher the curve above the dashed diagonal (random picking), the fewer accounts to work for the same wins.",
        )
    )

    holdout = result.holdout
    won = (holdout[OUTCOME] == WON).to_numpy() & holdout[DAYS_TO_CLOSE].notna().to_numpy()
    if result.scorer.velocity is not None and won.any():
        scored = result.scorer.score(holdout[won], with_reasons=False)
        charts["velocity"].append(
            _chart(
                plots.velocity_residuals_plot(
                    holdout.loc[won, DAYS_TO_CLOSE].to_numpy(dtype=float),
                    scored["days_to_close_p50"].to_numpy(dtype=float),
                    directory / "velocity_residuals.png",
                ),
                "Velocity residuals",
                "Predicted median days to close against actual days for won holdout deals, "
                "and a histogram of the prediction errors.",
                "Left: each dot is a won deal; on the diagonal the P50 forecast was exact. Right: errors in days.",
            )
        )

    # The same sample as the MLflow run's plots: TreeSHAP is too costly to run twice.
    matrix, contrib = result.shap_sample
    shap_dir = directory / "shap"
    paths = plots.shap_plots(contrib.values, matrix, contrib.base, shap_dir)
    titles = {
        "shap_summary.png": "SHAP summary",
        "shap_importance.png": "Feature importance (mean |SHAP|)",
    }
    for path in paths:
        name = path.name
        if name in titles:
            alt = (
                "Beeswarm of each account's SHAP contribution per feature, coloured by the feature value."
                if name == "shap_summary.png"
                else "Bar chart of the mean absolute SHAP value per feature."
            )
            caption = (
                "Each dot is an account; right of zero the feature raised its score. Colour is the feature's value."
                if name == "shap_summary.png"
                else "Average size of each feature's push, in either direction."
            )
            charts["shap"].append(_chart(path, titles[name], alt, caption))
        else:
            feature = name.removeprefix("shap_dependence_").removesuffix(".png")
            charts["shap"].append(
                _chart(
                    path,
                    f"Dependence: {feature}",
                    f"SHAP contribution of {feature} against its value.",
                    "Above zero the value raised the score.",
                )
            )
    return charts


def _data_summary(result: TrainingResult) -> dict[str, Any]:
    ds = result.dataset
    summary = ds.summary
    used = {f.name for f in result.scorer.features}
    refused = {f.feature for f in result.leak_findings if not f.allowed}
    features = [
        {
            "name": f.name,
            "column": f.column,
            "type": f.type,
            "description": f.description,
            "status": "used"
            if f.name in used
            else "refused (leakage)"
            if f.name in refused
            else "not used",
        }
        for f in ds.features
    ]
    closed = summary.outcomes.get("won", 0) + summary.outcomes.get("lost", 0)
    return {
        "name": ds.spec.name,
        "description": ds.spec.description or "",
        "sha256": ds.sha256,
        "rows_read": summary.rows_read,
        "accepted": summary.accepted,
        "rejected": summary.rejected,
        "rejected_by_reason": sorted(summary.rejected_by_reason.items(), key=lambda kv: -kv[1]),
        "outcomes": summary.outcomes,
        "win_rate": summary.outcomes.get("won", 0) / closed if closed else float("nan"),
        "features": features,
        "excluded": list(summary.excluded.items()),
        "notes": list(summary.notes),
        "sources": summary.sources,
        "leaks": [
            {"column": f.column, "rule": f.rule, "detail": f.detail, "allowed": f.allowed}
            for f in result.leak_findings
        ],
    }


def training_report(
    result: TrainingResult,
    path: Path,
    *,
    run_id: str | None = None,
    version: str | None = None,
    model_name: str | None = None,
) -> Path:
    """Write the HTML report of one training run.

    Args:
        result: The training run.
        path: Where to write the ``.html`` file (parent folders are created).
        run_id: MLflow run id, shown in the header and the card.
        version: Registered model version, if the run was registered.
        model_name: Registered model name.

    Returns:
        ``path``.
    """
    amounts = _holdout_amounts(result)
    with tempfile.TemporaryDirectory(prefix="abm-ml-report-") as tmp:
        charts = _training_charts(result, amounts, Path(tmp))
    main_auc = result.propensity[MODEL_NAME]["roc_auc"]
    logistic_auc = result.propensity.get("logistic_regression", {}).get("roc_auc")
    if result.no_better_than_chance:
        level = "danger"
    elif logistic_auc is not None and main_auc.low > logistic_auc.high:
        level = "good"
    else:
        level = "warn"
    propensity = {
        name: result.propensity[name]
        for name in (MODEL_NAME, *BASELINES)
        if name in result.propensity
    }
    velocity = dict(result.velocity)
    split = result.split.describe()
    dataset = _data_summary(result)
    capacity = capacity_analysis(result)
    # The headline card uses the capacity of the logged precision@k, so both tell the same story.
    k = int(result.propensity[MODEL_NAME]["k"].value)
    headline_capacity = next(
        (r for r in capacity["rows"] if r["k"] == k),
        capacity["rows"][0] if capacity["rows"] else None,
    )
    title = f"Training report: {dataset['name']}" + (f" v{version}" if version else "")
    return _render(
        "training_report.html.j2",
        path,
        title=title,
        dataset=dataset,
        run_id=run_id,
        version=version,
        model_name=model_name or MODEL_NAME,
        trained_at=_timestamp(result.scorer.metadata.get("trained_at")),
        calibration=result.scorer.calibrator.method,
        calibration_losses=[
            (k.rsplit("_", 1)[-1], v) for k, v in result.calibration_choice.items()
        ],
        best_iterations=result.best_iterations,
        verdict=verdict(result),
        verdict_level=level,
        headline={"auc": _metric_cell(main_auc), "capacity": headline_capacity},
        split=split,
        model_labels=MODEL_LABELS,
        propensity_models=list(propensity),
        propensity_rows=_metric_rows(propensity),
        velocity_models=list(velocity),
        velocity_rows=_metric_rows(velocity) if velocity else [],
        velocity_extra=[
            (EXTRA_LABELS[k], v) for k, v in result.velocity_extra.items() if k in EXTRA_LABELS
        ],
        capacity=capacity,
        charts=charts,
        importance=[
            (r.feature, r.mean_abs_shap) for r in result.feature_importance.head(15).itertuples()
        ],
        card=markdown_to_html(model_card(result, version=version, run_id=run_id), heading_offset=2),
    )


# ---------------------------------------------------------------------------------------------
# Ranking report
# ---------------------------------------------------------------------------------------------


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
                    if _finite(points)
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
                "abm_class": "t-"
                + re.sub(r"[^a-z0-9]+", "-", str(record.get("abm_tier", "")).lower()).strip("-"),
                "tier": str(record.get("tier", "")),
                "propensity": fmt_pct(propensity, 0),
                "bar": max(0.0, min(100.0, propensity * 100)) if _finite(propensity) else 0.0,
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


def ranking_report(
    result: RankResult, path: Path, *, model_card_md: str | None = None, top: int = 200
) -> Path:
    """Write the HTML report of one ranking run.

    Args:
        result: The ranking (:func:`abm_ml.rank.rank_accounts`).
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
    tiers = []
    for name in (*ABM_TIERS, NURTURE):
        part = ranked[ranked["abm_tier"] == name] if "abm_tier" in ranked else ranked.iloc[0:0]
        if len(part) or name in meta.get("tiers", {}):
            tiers.append(
                {
                    "name": name,
                    "class": "t-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"),
                    "count": len(part),
                    "capacity": meta.get("tiers", {}).get(name),
                    "expected_value": float(part["expected_value"].sum())
                    if "expected_value" in part
                    else float("nan"),
                    "mean_propensity": float(part["propensity"].mean())
                    if len(part) and "propensity" in part
                    else float("nan"),
                }
            )
    unscorable = result.unscorable
    reasons = (
        Counter(_reason_kind(str(r)) for r in unscorable["reason"])
        if "reason" in unscorable
        else Counter()
    )
    id_column = "account_id" if "account_id" in unscorable.columns else None
    unscorable_rows = [
        {
            "line": fmt_int(r.get("line")) if "line" in r else "",
            "account_id": ""
            if id_column is None or pd.isna(r.get(id_column))
            else str(r[id_column]),
            "reason": str(r.get("reason", "")),
        }
        for r in unscorable.head(50).to_dict("records")
    ]
    model_name = meta.get("model_name") or (
        str(ranked["model_name"].iloc[0]) if n and "model_name" in ranked else ""
    )
    model_version = meta.get("model_version") or (
        str(ranked["model_version"].iloc[0]) if n and "model_version" in ranked else ""
    )
    as_of = meta.get("as_of") or (str(ranked["as_of"].iloc[0]) if n and "as_of" in ranked else "")

    chart = None
    if n:
        with tempfile.TemporaryDirectory(prefix="abm-ml-report-") as tmp:
            chart = _chart(
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
    return _render(
        "ranking_report.html.j2",
        path,
        title=title,
        model_name=model_name,
        model_version=model_version,
        as_of=as_of,
        meta=meta,
        n_ranked=n,
        n_shown=min(n, top),
        total_expected_value=float(ranked["expected_value"].sum())
        if "expected_value" in ranked
        else float("nan"),
        tiers=tiers,
        n_unscorable=len(unscorable),
        unscorable_reasons=reasons.most_common(6),
        unscorable_rows=unscorable_rows,
        unscorable_has_line="line" in unscorable.columns,
        has_movement="movement" in ranked.columns,
        has_context=any(c in ranked.columns for c in ("segment", "region", "owner")),
        rows=_ranked_rows(ranked, top),
        chart=chart,
        card=markdown_to_html(model_card_md, heading_offset=1) if model_card_md else None,
    )
