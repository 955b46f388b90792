"""One monitored scoring run: profile the accounts, compare, keep the profile, write the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from abm_ml.data.readers import ROW_PROBLEM
from abm_ml.data.spec import MonitoringSpec
from abm_ml.errors import AbmInputError
from abm_ml.modeling.scorer import AccountScorer
from abm_ml.monitoring.drift import MonitorResult, compare, thresholds_of
from abm_ml.monitoring.profile import SCORING, ProfileStore, profile_values, reference_of


def monitor_accounts(
    scorer: AccountScorer,
    accounts: pd.DataFrame,
    *,
    as_of: str,
    store: ProfileStore,
    model_version: str | None = None,
    thresholds: MonitoringSpec | None = None,
    source: str = "accounts",
) -> MonitorResult:
    """Profile the accounts a model scores, compare them with its references, store the profile.

    Args:
        scorer: the model that scores them; it must carry its training profile.
        accounts: the accounts as read (the CRM's columns, through the model's input spec).
            Records the reader found cut short are left out (their values cannot be trusted);
            values that do not parse count as missing, which is what a changed export looks like.
        as_of: the scoring date; this run's profile replaces an earlier one of the same date.
        store: where this model version's scoring-run profiles are kept.
        model_version: the registered version, for the report.
        thresholds: limits overriding the ones stored with the model.
        source: the accounts' file, for messages.

    Raises:
        AbmInputError: the model has no training profile (trained before monitoring existed),
            or no account can be profiled.
    """
    training = reference_of(scorer)
    if training is None:
        raise AbmInputError(
            "this model was trained without a reference profile (abm-ml before monitoring); "
            "retrain it to monitor its inputs",
            field="model",
        )
    unreadable = 0
    if ROW_PROBLEM in accounts.columns:
        unreadable = int(accounts[ROW_PROBLEM].notna().sum())
        accounts = accounts[accounts[ROW_PROBLEM].isna()]
    if accounts.empty:
        raise AbmInputError("no readable account to monitor", source=source)
    prepared = scorer.prepare(accounts)
    frame = prepared.frame if prepared is not None else accounts.reset_index(drop=True)
    values = scorer.preprocessor.raw_values(frame)
    propensity = scorer.score(frame, with_reasons=False, parsed=prepared is not None)[
        "propensity"
    ].to_numpy()
    limits = thresholds_of(training, thresholds)
    as_of = str(pd.Timestamp(as_of).date())
    current = profile_values(
        scorer,
        values,
        propensity,
        population=SCORING,
        layout=training,
        as_of=as_of,
        model_version=model_version,
        thresholds=limits.model_dump(),
    )
    result = compare(current, training, store.reference_for(as_of, limits.reference), limits)
    result.unreadable_rows = unreadable
    store.save(current)
    return result


def write_outputs(result: MonitorResult, folder: Path, *, stem: str) -> tuple[Path, Path]:
    """The verdict as JSON and as an HTML page in ``folder``; their paths (JSON, HTML)."""
    from abm_ml.reporting.monitoring_report import monitoring_report

    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / f"{stem}.json"
    json_path.write_text(json.dumps(result.to_dict(), indent=2, allow_nan=False))
    html_path = monitoring_report(result, folder / f"{stem}.html")
    return json_path, html_path


def drift_rows(result: MonitorResult, top: int = 8) -> list[tuple[str, ...]]:
    """The flagged features first, then the largest PSI: rows for a terminal table."""
    shown = result.table.head(max(top, len(result.flagged)))
    return [
        (
            row.feature,
            "-" if not np.isfinite(row.psi) else f"{row.psi:.3f}",
            f"{row.psi_vs_training:.3f}",
            f"{row.missing_reference:.1%} -> {row.missing_now:.1%}",
            f"{row.unseen_now:.1%}" if row.type == "categorical" else "-",
            row.status,
        )
        for row in shown.itertuples()
    ]
