"""The model card: what data, which split, how good (with intervals, next to the baselines)."""

from __future__ import annotations

import json

from abm_ml.modeling import metrics as m
from abm_ml.modeling.train import MODEL_NAME, TrainingResult


def _table(frame) -> str:
    header = "| metric | " + " | ".join(frame.columns) + " |"
    rule = "|---" * (len(frame.columns) + 1) + "|"
    rows = [
        f"| {idx} | " + " | ".join(str(v) for v in row) + " |"
        for idx, row in zip(frame.index, frame.values)
    ]
    return "\n".join([header, rule, *rows])


def worse_than_logistic_regression(result: TrainingResult) -> bool:
    """The model's ROC AUC interval lies wholly below the logistic regression's."""
    auc = result.propensity[MODEL_NAME]["roc_auc"]
    logistic = result.propensity.get("logistic_regression", {}).get("roc_auc")
    return bool(logistic is not None and auc.high < logistic.low)


def registration_refusal(result: TrainingResult) -> str | None:
    """Why this model must not become the challenger without ``--force``; None when it may."""
    if result.no_better_than_chance:
        return "it is no better than chance (its ROC AUC interval reaches 0.5)"
    if worse_than_logistic_regression(result):
        return "it is worse than logistic regression (its ROC AUC interval lies wholly below)"
    return None


def verdict(result: TrainingResult) -> str:
    """One plain sentence on whether the ranking means anything."""
    auc = result.propensity[MODEL_NAME]["roc_auc"]
    logistic = result.propensity["logistic_regression"]["roc_auc"]
    if result.no_better_than_chance:
        return (
            f"NO BETTER THAN CHANCE: ROC AUC {auc} includes 0.5. The data carries no learnable signal about "
            "winning; do not use this ranking. This version cannot be promoted."
        )
    if worse_than_logistic_regression(result):
        return (
            f"WORSE THAN LOGISTIC REGRESSION: ROC AUC {auc} on the holdout lies wholly below "
            f"logistic regression's ({logistic}); use the simpler model or more data."
        )
    better = "better than" if auc.low > logistic.high else "not clearly better than"
    return f"ROC AUC {auc} on the holdout, {better} logistic regression ({logistic})."


def held_out_note(split: dict) -> str:
    """Why rows were used nowhere, from :meth:`Split.describe`, or '' when none were."""
    n = split["n_held_out"]
    if not n:
        return ""
    if "sampled" in split["method"]:
        # Accounts recur in every period: a sample of them is tested, on their recent deals.
        why = "older deals of the sampled accounts and recent deals of the others"
    else:
        why = "older deals of accounts with a later test or validation deal"
    note = f"{n:,} held out ({why}, so no account is on both sides)"
    refit = split.get("n_held_valid", 0)
    if refit:
        note += f", of which {refit:,} held out only for validation join the final refit"
    return note


def split_line(result: TrainingResult) -> str:
    """One line for the terminal: where the closed deals went."""
    s = result.split.describe()
    parts = [f"{s['n_train']:,} train", f"{s['n_valid']:,} validation", f"{s['n_test']:,} test"]
    note = held_out_note(s)
    return (
        f"Closed deals ({s['method']} split): " + ", ".join(parts) + (f"; {note}" if note else "")
    )


def _velocity_section(result: TrainingResult) -> list[str]:
    days = result.scorer.days_source
    if not result.velocity:
        said = (
            "Not trained: too few won deals with a known duration; the median days are used."
            if days
            else "None: the data has no dates or duration, so no days to close are given."
        )
        return ["", "## Deal velocity", said]
    lines = [
        "",
        "## Deal velocity (won deals in the holdout)",
        _table(m.metrics_table(result.velocity)),
    ]
    not_used = result.scorer.metadata.get("velocity_not_used")
    if not_used:
        lines += ["", f"**Not served:** {not_used}; days and priority use the median days."]
    extra = {k: v for k, v in result.velocity_extra.items() if "c_index" in k or "aft_mae" in k}
    if extra:
        lines.append("")
        lines.append(
            "Censoring-aware comparison (won deals as events, open deals censored at the data's end): "
            + ", ".join(f"{k} = {v:.3f}" for k, v in extra.items())
            + "."
        )
    return lines


def model_card(
    result: TrainingResult, *, version: str | None = None, run_id: str | None = None
) -> str:
    """Markdown model card logged with the run and shown in the training report."""
    ds = result.dataset
    s = result.split.describe()
    lines = [
        f"# Model card: {ds.spec.name}" + (f" (version {version})" if version else ""),
        "",
        f"**Verdict.** {verdict(result)}",
        "",
        "## Data",
        f"- Dataset: {ds.spec.description or ds.spec.name}; hash `{ds.sha256[:16]}`.",
        f"- Rows read {ds.summary.rows_read}, accepted {ds.summary.accepted}, rejected {ds.summary.rejected}"
        + (f" ({json.dumps(ds.summary.rejected_by_reason)})" if ds.summary.rejected else "")
        + ".",
        f"- Outcomes: {ds.summary.outcomes['won']} won, {ds.summary.outcomes['lost']} lost, {ds.summary.outcomes['open']} open.",
        f"- Features used ({len(result.scorer.features)}): "
        + ", ".join(f"`{f.name}`" for f in result.scorer.features)
        + ".",
    ]
    if ds.summary.excluded:
        lines.append(
            "- Excluded by the spec: "
            + "; ".join(f"`{c}` ({r})" for c, r in ds.summary.excluded.items())
            + "."
        )
    for finding in result.leak_findings:
        lines.append(f"- Leakage guard: {finding.message()}.")
    lines += [
        "",
        "## Split",
        f"- Method: **{s['method']}**"
        + (
            f", test period from {s['test_start']}, validation from {s['valid_start']}"
            if s.get("test_start")
            else " (stratified by outcome, grouped by account)"
        )
        + f"; train {s['n_train']}, validation {s['n_valid']}, test {s['n_test']} rows"
        + (f"; {held_out_note(s)}." if s["n_held_out"] else "."),
        (
            f"- Refit on train + validation{' + the rows held out only for validation' if s.get('n_held_valid') else ''} with {result.best_iterations['propensity_refit']} rounds "
            "(the early-stopped count); calibrated on cross-fitted scores of those rows."
            if "propensity_refit" in result.best_iterations
            else "- Early-stopped on validation rows, calibrated on them (refit off, or too few rows to cross-fit)."
        ),
        f"- Calibration: {result.scorer.calibrator.method} (chosen by cross-validated log loss on held-out scores: "
        + ", ".join(f"{k.rsplit('_', 1)[-1]} {v:.4f}" for k, v in result.calibration_choice.items())
        + ").",
        "",
        "## Propensity to buy (holdout, 95 % bootstrap intervals)",
        _table(m.metrics_table(result.propensity)),
    ]
    lines += _velocity_section(result)
    top = result.feature_importance.head(10)
    lines += ["", "## What drives the score (mean |SHAP| on the holdout, log-odds)", ""]
    lines += [
        f"{i + 1}. `{r.feature}`: {r.mean_abs_shap:.3f}" for i, r in enumerate(top.itertuples())
    ]
    lines += [
        "",
        "## How to read the numbers",
        "- Reasons explain the uncalibrated model's log-odds; each reason also gives its approximate effect in probability points.",
        "- `score` is the calibrated propensity in percent (1-99); tiers A/B/C/D are the top 10 %, next 20 %, next 30 % and the rest of the held-out scores the calibrator was fitted on.",
        f"- `priority` = {result.scorer.basis()['priority']}.",
        f"- Capacity for precision@k / recall@k: k = {int(result.propensity[MODEL_NAME]['k'].value)} accounts.",
    ]
    if run_id:
        lines.append(f"- MLflow run: `{run_id}`.")
    return "\n".join(lines) + "\n"
