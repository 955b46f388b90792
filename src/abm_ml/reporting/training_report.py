"""The HTML report of a training run: the model card as a page.

Data, split, metrics with intervals next to the baselines, calibration / gains / velocity / SHAP
charts, and a capacity analysis ("working the top 50 accounts would have reached X % of won
revenue").
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from abm_ml.modeling import metrics as m
from abm_ml.modeling.train import MODEL_NAME, TrainingResult
from abm_ml.registry.card import model_card, verdict, worse_than_logistic_regression
from abm_ml.reporting import plots
from abm_ml.reporting.formatting import (
    fmt_int,
    fmt_num,
    fmt_pct,
    fmt_timestamp,
    is_finite,
    markdown_to_html,
)
from abm_ml.reporting.page import embed_chart, render
from abm_ml.schema import AMOUNT, DAYS_TO_CLOSE, OUTCOME, WON

__all__ = ["capacity_analysis", "training_charts", "training_report"]

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


def _metric_cell(metric: m.Metric) -> dict[str, str]:
    """Value and interval as separate strings, so the template can style the interval quieter."""
    if metric.low == metric.value == metric.high:
        value = fmt_int(metric.value) if float(metric.value).is_integer() else fmt_num(metric.value)
        return {"value": value, "interval": ""}
    interval = (
        f"[{fmt_num(metric.low)}, {fmt_num(metric.high)}]"
        if is_finite(metric.low)
        else "[no interval]"
    )
    return {"value": fmt_num(metric.value), "interval": interval}


def _metric_rows(named: Mapping[str, Mapping[str, m.Metric]]) -> list[dict[str, Any]]:
    """One row per metric, one cell per model, the best model's cell marked."""
    names: list[str] = []
    for metrics in named.values():
        names.extend(n for n in metrics if n not in names)
    rows = []
    for name in names:
        values = {model: metrics[name].value for model, metrics in named.items() if name in metrics}
        finite = {k: v for k, v in values.items() if is_finite(v)}
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


CALIBRATION_PNG, GAINS_PNG, VELOCITY_PNG = (
    "calibration.png",
    "cumulative_gains.png",
    "velocity_residuals.png",
)
SHAP_SUMMARY_PNG, SHAP_IMPORTANCE_PNG, SHAP_DEPENDENCE_PREFIX = (
    "shap_summary.png",
    "shap_importance.png",
    "shap_dependence_",
)


def training_charts(result: TrainingResult) -> dict[str, bytes]:
    """Every chart of a training run as PNG bytes by file name, drawn once per result.

    The MLflow run logs these files and the HTML report embeds the same images, so the charts
    (and the SHAP import behind two of them) cost once per training, not once per consumer.
    Charts: calibration and cumulative gains of the model and the baselines on the holdout,
    the velocity residuals (when a velocity model is served), the SHAP summary, importance
    and dependence plots of the explained holdout sample.
    """
    if result.charts is not None:
        return result.charts
    predicted = result.holdout_predictions
    y = predicted["won"].to_numpy().astype(int)
    models = {
        name: predicted[name].to_numpy(dtype=float)
        for name in (MODEL_NAME, *BASELINES)
        if name in predicted
    }
    holdout = result.holdout
    won = (holdout[OUTCOME] == WON).to_numpy() & holdout[DAYS_TO_CLOSE].notna().to_numpy()
    with tempfile.TemporaryDirectory(prefix="abm-ml-charts-") as tmp:
        folder = Path(tmp)
        paths = [
            plots.calibration_plot(y, models, folder / CALIBRATION_PNG),
            plots.gains_plot(y, models, folder / GAINS_PNG, _holdout_amounts(result)),
        ]
        if result.scorer.velocity is not None and won.any():
            # The served P50 of these rows, as evaluated (holdout_predictions come from the scorer).
            paths.append(
                plots.velocity_residuals_plot(
                    holdout.loc[won, DAYS_TO_CLOSE].to_numpy(dtype=float),
                    predicted.loc[won, "days_to_close_p50"].to_numpy(dtype=float),
                    folder / VELOCITY_PNG,
                )
            )
        if result.shap_sample is not None:
            matrix, contrib = result.shap_sample
            paths += plots.shap_plots(contrib.values, matrix, contrib.base, folder)
        result.charts = {path.name: path.read_bytes() for path in paths}
    return result.charts


CHART_TEXT = {
    CALIBRATION_PNG: (
        "Calibration",
        (
            "Predicted win probability against the observed win rate per decile of the holdout, "
            "for the model and the baselines; points on the diagonal are well calibrated."
        ),
        "Points on the dashed diagonal mean a 30 % score wins about 30 % of the time. Bars are 95 % intervals.",
    ),
    GAINS_PNG: (
        "Cumulative gains",
        (
            "Share of wins reached against the share of holdout accounts worked in score order, "
            "for the model, the baselines and random picking."
        ),
        "The higher the curve above the dashed diagonal (random picking), the fewer accounts to work for the same wins.",
    ),
    VELOCITY_PNG: (
        "Velocity residuals",
        (
            "Predicted median days to close against actual days for won holdout deals, "
            "and a histogram of the prediction errors."
        ),
        "Left: each dot is a won deal; on the diagonal the P50 forecast was exact. Right: errors in days.",
    ),
    SHAP_SUMMARY_PNG: (
        "SHAP summary",
        "Beeswarm of each account's SHAP contribution per feature, coloured by the feature value.",
        "Each dot is an account; right of zero the feature raised its score. Colour is the feature's value.",
    ),
    SHAP_IMPORTANCE_PNG: (
        "Feature importance (mean |SHAP|)",
        "Bar chart of the mean absolute SHAP value per feature.",
        "Average size of each feature's push, in either direction.",
    ),
}
"""Title, alt text and caption of each chart in the report."""


def _training_charts(result: TrainingResult) -> dict[str, list[dict[str, str]]]:
    """The run's charts (:func:`training_charts`) embedded, by report section."""
    sections: dict[str, list[dict[str, str]]] = {"propensity": [], "velocity": [], "shap": []}
    for name, png in training_charts(result).items():
        if name in (CALIBRATION_PNG, GAINS_PNG):
            sections["propensity"].append(embed_chart(png, *CHART_TEXT[name]))
        elif name == VELOCITY_PNG:
            sections["velocity"].append(embed_chart(png, *CHART_TEXT[name]))
        elif name in CHART_TEXT:
            sections["shap"].append(embed_chart(png, *CHART_TEXT[name]))
        else:
            feature = name.removeprefix(SHAP_DEPENDENCE_PREFIX).removesuffix(".png")
            sections["shap"].append(
                embed_chart(
                    png,
                    f"Dependence: {feature}",
                    f"SHAP contribution of {feature} against its value.",
                    "Above zero the value raised the score.",
                )
            )
    return sections


def _data_summary(result: TrainingResult) -> dict[str, Any]:
    ds = result.dataset
    summary = ds.summary
    used = {f.name for f in result.scorer.features}
    refused = {f.feature for f in result.leak_findings if f.refuses}
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
            {
                "column": f.column,
                "rule": f.rule,
                "detail": f.detail,
                "allowed": f.allowed,
                "level": f.level,
                "decision": f.decision,
            }
            for f in result.leak_findings
        ],
    }


def _verdict_level(result: TrainingResult) -> str:
    """Banner colour: danger when no better than chance or worse than logistic regression, good when the model's AUC interval is
    above the logistic regression's, warn otherwise."""
    main_auc = result.propensity[MODEL_NAME]["roc_auc"]
    logistic_auc = result.propensity.get("logistic_regression", {}).get("roc_auc")
    if result.no_better_than_chance or worse_than_logistic_regression(result):
        return "danger"
    if logistic_auc is not None and main_auc.low > logistic_auc.high:
        return "good"
    return "warn"


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
    charts = _training_charts(result)
    main_auc = result.propensity[MODEL_NAME]["roc_auc"]
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
    return render(
        "training_report.html.j2",
        path,
        title=title,
        dataset=dataset,
        run_id=run_id,
        version=version,
        model_name=model_name or MODEL_NAME,
        trained_at=fmt_timestamp(result.scorer.metadata.get("trained_at")),
        calibration=result.scorer.calibrator.method,
        calibration_losses=[
            (k.rsplit("_", 1)[-1], v) for k, v in result.calibration_choice.items()
        ],
        best_iterations=result.best_iterations,
        leaderboard=result.leaderboard,
        propensity_choice=result.propensity_choice,
        verdict=verdict(result),
        verdict_level=_verdict_level(result),
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
