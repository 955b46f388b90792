"""HTML pages of monitoring: a scoring run's drift verdict, and a backtest of issued scores."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from abm_ml.reporting.page import render

if TYPE_CHECKING:
    from abm_ml.monitoring.backtest import Backtest
    from abm_ml.monitoring.drift import MonitorResult


def monitoring_report(result: MonitorResult, path: Path) -> Path:
    """Write the drift page of one monitored scoring run; its path."""
    from abm_ml.monitoring.drift import summary_line

    reference = result.scoring_reference or result.training
    current = result.current
    return render(
        "monitoring_report.html.j2",
        path,
        title=f"Input monitoring, {current.as_of}",
        model_version=current.model_version,
        as_of=current.as_of,
        rows=current.rows,
        reference=result.reference,
        verdict=result.verdict,
        drifted=result.drifted,
        summary=summary_line(result),
        estimated_auc=current.estimated_roc_auc,
        reference_auc=reference.estimated_roc_auc,
        flagged=result.flagged,
        mean_propensity=current.mean_propensity,
        training_mean=result.training.mean_propensity,
        thresholds=result.thresholds,
        rows_table=result.table.to_dict(orient="records"),
    )


def _table(frame: pd.DataFrame, table_id: str) -> str:
    """A frame as an escaped HTML table (CRM values are text, never markup)."""
    return (
        '<div class="table-wrap">'
        + frame.to_html(index=False, escape=True, table_id=table_id, na_rep="\u2013", border=0)
        + "</div>"
    )


def backtest_report(backtest: Backtest, path: Path) -> Path:
    """Write the backtest page: per tier and decile, capacity capture, the review list; its path."""
    shown = backtest.formatted()
    return render(
        "backtest_report.html.j2",
        path,
        title=f"Backtest of the scores issued {backtest.as_of}",
        as_of=backtest.as_of,
        model_version=backtest.model_version,
        outcomes_to=backtest.outcomes_to,
        accounts=backtest.accounts,
        won_accounts=backtest.won_accounts,
        roc_auc=backtest.roc_auc,
        mean_propensity=backtest.mean_propensity,
        win_rate=backtest.win_rate,
        capture=backtest.capture_lines(),
        note=backtest.note,
        tiers_html=_table(shown["tiers"], "tiers-table"),
        deciles_html=_table(shown["deciles"], "deciles-table"),
        false_negatives_html=(
            _table(shown["false_negatives"], "false-negatives-table")
            if len(shown["false_negatives"])
            else ""
        ),
    )
