"""Monitoring commands: did the inputs drift, did the ranking work, retrain on evidence.

Exit code 3 (:data:`abm_ml.monitoring.drift.EXIT_DRIFT`) means a monitoring threshold was
crossed, so a scheduler can act on it; 0 and 2 keep their usual meaning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from abm_ml import config as cfg
from abm_ml.cli.app import ModelOpt, app, console, err_console, load_model
from abm_ml.errors import AbmInputError


def monitoring_dir() -> Path:
    """Where monitoring verdicts, backtests and scoring-run profiles are written."""
    return cfg.reports_dir() / "monitoring"


def parse_date(value: str | None, option: str) -> str:
    """``YYYY-MM-DD`` of a date option (today when None); a wrong one names the option."""
    import pandas as pd

    try:
        return str(pd.Timestamp(value).date()) if value else str(pd.Timestamp.now().date())
    except ValueError:
        raise AbmInputError(f"not a date: {value!r}", field=option) from None


def run_monitor(scorer, version, accounts, *, as_of: str, spec: Path | None = None):
    """Monitor one scoring run of a registered version: verdict printed, JSON + HTML written.

    Shared by ``monitor`` and ``rank --monitor``; the report is also attached to the
    version's training run in MLflow. Returns the :class:`MonitorResult`.
    """
    from abm_ml.monitoring.drift import summary_line
    from abm_ml.monitoring.monitor import drift_rows, monitor_accounts, write_outputs
    from abm_ml.monitoring.profile import ProfileStore

    thresholds = None
    if spec is not None:
        from abm_ml.data.spec import load_spec

        thresholds = load_spec(spec).monitoring
    store = ProfileStore(
        monitoring_dir() / "profiles", cfg.registered_model_name(), str(version.version)
    )
    result = monitor_accounts(
        scorer,
        accounts,
        as_of=as_of,
        store=store,
        model_version=str(version.version),
        thresholds=thresholds,
    )
    json_path, html_path = write_outputs(
        result, monitoring_dir(), stem=f"monitor-v{version.version}-{result.current.as_of}"
    )
    _attach(version, [json_path, html_path], "monitoring")
    table = Table(title=f"Input drift against the {result.reference} (top of {len(result.table)})")
    for header in ("feature", "PSI", "PSI vs training", "missing", "never seen", "status"):
        table.add_column(header, justify="left" if header in ("feature", "status") else "right")
    for row in drift_rows(result):
        table.add_row(*row)
    console.print(table)
    colour = "bold red" if result.drifted else "bold green"
    console.print(f"[{colour}]{escape(summary_line(result))}[/]")
    console.print(
        f"Estimated ROC AUC without labels: {result.current.estimated_roc_auc:.3f} "
        f"(assumes the scores are still calibrated)."
    )
    console.print(f"Monitoring report -> {html_path}")
    return result


def _attach(version, paths: list[Path], folder: str) -> None:
    """Log report files to the training run of ``version``; a store that refuses costs a warning."""
    from abm_ml.registry.store import client

    try:
        registry = client()
        for path in paths:
            registry.log_artifact(version.run_id, str(path), artifact_path=folder)
    except Exception as error:  # noqa: BLE001 - the files are written; MLflow is a copy
        err_console.print(
            f"[yellow]warning:[/] not attached to MLflow run {version.run_id}: "
            f"{escape(type(error).__name__)}",
            highlight=False,
        )


@app.command()
def monitor(
    accounts: Annotated[
        str,
        typer.Argument(
            help="The accounts of a scoring run: a CSV/Parquet file, or a SQLAlchemy URL with --table or --query."
        ),
    ],
    table: Annotated[
        str | None, typer.Option(help="Table to read when ACCOUNTS is a database URL.")
    ] = None,
    query: Annotated[
        str | None, typer.Option(help="SQL query to run when ACCOUNTS is a database URL.")
    ] = None,
    model: ModelOpt = "champion",
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Date of the scoring run (default today).")
    ] = None,
    spec: Annotated[
        Path | None,
        typer.Option(help="A dataset spec whose `monitoring:` thresholds replace the model's."),
    ] = None,
) -> None:
    """Has the input drifted? Compare a scoring run's accounts with the model's references.

    The first monitored run of a model version is compared with the training rows (only
    categories the model never saw can alarm there: accounts today are not opportunities at
    creation) and becomes the reference of later runs. Exit code 3 when a threshold is crossed.
    """
    from abm_ml.modeling.ranking import check_accounts_source, load_accounts
    from abm_ml.monitoring.drift import EXIT_DRIFT

    check_accounts_source(accounts, table=table, query=query)
    if "://" not in accounts and not Path(accounts).exists():
        raise AbmInputError("file not found", source=accounts)
    scorer, version = load_model(model)
    frame = load_accounts(accounts, table=table, query=query, scorer=scorer)
    result = run_monitor(scorer, version, frame, as_of=parse_date(as_of, "--as-of"), spec=spec)
    if result.drifted:
        raise typer.Exit(EXIT_DRIFT)


__all__ = ["monitor", "monitoring_dir", "parse_date", "run_monitor"]
