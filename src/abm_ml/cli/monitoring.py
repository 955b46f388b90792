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
from abm_ml.cli.app import (
    ModelOpt,
    QueryOpt,
    SpecArg,
    TableOpt,
    app,
    console,
    err_console,
    load_model,
)
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
    if result.unreadable_rows:
        console.print(
            f"[yellow]{result.unreadable_rows:,} records cut short or too wide were not profiled[/] "
            "(rank lists them as unscorable)."
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
    table: TableOpt = None,
    query: QueryOpt = None,
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


def _frame_table(title: str, frame) -> Table:
    shown = Table(title=title)
    for column in frame.columns:
        shown.add_column(
            str(column),
            justify="left"
            if column in ("abm_tier", "account_id", "top_reasons", "risk")
            else "right",
        )
    for row in frame.itertuples(index=False):
        shown.add_row(*[escape(str(v)) for v in row])
    return shown


@app.command()
def backtest(
    outcomes: SpecArg,
    since: Annotated[
        str,
        typer.Option(help="Backtest the first ranking run on or after this date (YYYY-MM-DD)."),
    ],
    history_url: Annotated[
        str | None,
        typer.Option(help="SQLAlchemy URL of the score history (default SQLite under reports/)."),
    ] = None,
    model_version: Annotated[
        str | None, typer.Option(help="Only runs of this model version.")
    ] = None,
    ranking: Annotated[
        Path | None,
        typer.Option(
            help="The run's ranking file, for the reasons of the missed accounts "
            "(default reports/rankings/ranking-AS_OF.csv when it exists)."
        ),
    ] = None,
    review: Annotated[int, typer.Option(help="Missed won accounts to list for review.")] = 50,
) -> None:
    """Did the ranking work? The scores as issued against the outcomes of a later export.

    OUTCOMES is a dataset spec reading the later export (the training spec does). Per ABM tier
    and score decile: realised win rate and won revenue; ROC AUC of the scores as issued;
    capacity capture; the won accounts scored in the bottom tier, with their reasons.
    """
    from abm_ml.data.spec import load_spec
    from abm_ml.data.validate import load_dataset
    from abm_ml.monitoring.backtest import account_outcomes, run_backtest, select_run
    from abm_ml.reporting.history import load_history

    since = parse_date(since, "--since")
    history = load_history(history_url or cfg.history_url())
    run = select_run(history, since, model_version)
    as_of, version = str(run["as_of"].iloc[0]), str(run["model_version"].iloc[0])
    with console.status("Reading the outcomes..."):
        dataset = load_dataset(load_spec(outcomes))
    found = account_outcomes(dataset.frame, as_of, source=str(outcomes))
    ranking = ranking or cfg.reports_dir() / "rankings" / f"ranking-{as_of}.csv"
    reasons = _read_ranking(ranking) if ranking.is_file() else None
    if (
        reasons is not None
        and "model_version" in reasons.columns
        and set(reasons["model_version"].astype(str)) != {version}
    ):
        reasons = None  # another model's ranking of the same date: its reasons are not these
    result = run_backtest(run, found, reasons=reasons, review=review)
    shown = result.formatted()
    console.print(
        _frame_table(
            f"Scores issued {as_of} by model v{version}, outcomes to {result.outcomes_to}",
            shown["tiers"],
        )
    )
    console.print(_frame_table("By score decile", shown["deciles"]))
    if result.won_accounts:
        for line in result.capture_lines():
            console.print(line)
        console.print(
            f"ROC AUC of the scores as issued: {result.roc_auc:.3f}; mean issued propensity "
            f"{result.mean_propensity:.1%}, realised win rate {result.win_rate:.1%}."
        )
    else:
        console.print(
            f"[yellow]No scored account won a deal between {as_of} and {result.outcomes_to}[/]: "
            "what each tier captured and the ROC AUC cannot be measured yet (mean issued "
            f"propensity {result.mean_propensity:.1%})."
        )
    console.print(
        f"{len(result.false_negatives):,} won accounts were in the nurture tier"
        + ("" if reasons is not None else " (no ranking file of this run: reasons not shown)")
        + "."
    )
    paths = write_backtest(result, monitoring_dir(), stem=f"backtest-v{version}-{as_of}")
    _attach_backtest(result, paths)
    console.print(f"Backtest report -> {paths[1]}")


def _read_ranking(path: Path):
    """A ranking file as ``rank`` wrote it (CSV or Parquet by suffix), ids as text."""
    import pandas as pd

    if path.suffix.lower() in {".parquet", ".pq"}:
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype={"account_id": str, "model_version": str})


def write_backtest(result, folder: Path, *, stem: str) -> tuple[Path, Path]:
    """The backtest as JSON and HTML in ``folder``; their paths (JSON, HTML)."""
    import json

    from abm_ml.reporting.monitoring_report import backtest_report

    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / f"{stem}.json"
    json_path.write_text(json.dumps(result.to_dict(), indent=2, allow_nan=False, default=str))
    return json_path, backtest_report(result, folder / f"{stem}.html")


def _attach_backtest(result, paths: tuple[Path, Path]) -> None:
    """Log the backtest to the training run of the model version that issued the scores."""
    import math

    import pandas as pd

    from abm_ml.registry.store import client, configure, resolve_version

    try:
        configure()
        version = resolve_version(cfg.registered_model_name(), result.model_version)
    except AbmInputError as error:
        err_console.print(f"[yellow]warning:[/] not logged to MLflow ({escape(str(error))})")
        return
    _attach(version, list(paths), "backtest")
    step = int(pd.Timestamp(result.as_of).strftime("%Y%m%d"))
    try:
        registry = client()
        for name in ("roc_auc", "brier", "win_rate"):
            value = getattr(result, name)
            if math.isfinite(value):
                registry.log_metric(version.run_id, f"backtest_{name}", value, step=step)
    except Exception as error:  # noqa: BLE001 - the files are written; MLflow is a copy
        err_console.print(
            f"[yellow]warning:[/] backtest metrics not logged ({type(error).__name__})"
        )


@app.command()
def retrain(
    spec: SpecArg,
    accounts: Annotated[
        str | None,
        typer.Option(
            help="Accounts to rank with the champion afterwards, with --monitor (CSV/Parquet)."
        ),
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Date of that ranking (default today).")
    ] = None,
    metric: Annotated[
        str, typer.Option(help="Primary holdout metric the challenger must beat the champion on.")
    ] = "roc_auc",
    calibration_tolerance: Annotated[
        float,
        typer.Option(
            help="ECE the challenger may lose against the champion and still be promoted "
            "(more when the paired difference's 95 % interval reaches zero)."
        ),
    ] = 0.02,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for the intervals.")] = 200,
) -> None:
    """The nightly job: validate, train, promote only on evidence, rank and monitor.

    The new model is registered as challenger and becomes champion only if it beats the
    champion on the newest holdout (--metric) without losing more than --calibration-tolerance
    of ECE beyond the noise of the paired difference. Exit codes: 0 done (promoted or champion kept), 2 bad input, 3 drift in the ranked
    accounts, 1 internal error. Roll back with `abm-ml rollback`.
    """
    from abm_ml.cli.accounts import rank
    from abm_ml.cli.models import write_training_report
    from abm_ml.data.spec import load_spec
    from abm_ml.data.validate import load_dataset
    from abm_ml.modeling.evaluate import check_metric
    from abm_ml.modeling.train import TrainConfig, train_models
    from abm_ml.monitoring.retrain import promote_if_better
    from abm_ml.registry import tracking
    from abm_ml.registry.card import registration_refusal, verdict

    check_metric(metric)
    if accounts is not None and "://" not in accounts and not Path(accounts).exists():
        raise AbmInputError("file not found", source=accounts, field="--accounts")
    tracking.configure()
    console.rule("1. Validate")
    dataset = load_dataset(load_spec(spec))
    console.print(
        f"{dataset.summary.accepted:,} rows accepted, {dataset.summary.rejected:,} rejected."
    )
    console.rule("2. Train")
    with console.status("Training propensity and velocity models..."):
        try:
            result = train_models(dataset, TrainConfig(seed=seed, n_boot=n_boot))
        except Exception as error:
            tracking.log_failed_training(dataset.spec.name, error)
            raise
    console.print(verdict(result))
    refusal = registration_refusal(result)
    with console.status("Logging to MLflow..."):
        info = tracking.log_training(result, register=refusal is None)
    write_training_report(result, info)
    console.rule("3. Compare with the champion")
    if refusal is not None:
        console.print(f"[yellow]Not registered[/] ({refusal}); the champion stays.")
    else:
        outcome = promote_if_better(info["version"], metric=metric, tolerance=calibration_tolerance)
        if outcome.promoted:
            console.print(
                f"[bold green]Version {outcome.version} is now champion[/] ({escape(outcome.reason)})."
            )
        else:
            console.print(
                f"[yellow]Version {outcome.version} not promoted[/]: {escape(outcome.reason)}. "
                f"Champion stays version {outcome.champion}."
            )
    if accounts is None:
        return
    console.rule("4. Rank and monitor with the champion")
    rank(
        accounts=accounts,
        as_of=as_of,
        show=10,
        monitor=True,
    )


def demo_backtest_and_monitor(spec_path: Path, as_of: str) -> None:
    """The demo's closing step: a backtest of a ranking issued 180 days before ``as_of``, and
    the drift verdicts of two scoring runs (that earlier one, then ``as_of``'s), all from the
    multi-table export of ``spec_path``.

    In the demo the model was trained on the same world, so the backtest is in-sample: it
    shows the report, not the model's true forward performance.
    """
    import pandas as pd

    from abm_ml.cli.accounts import rank
    from abm_ml.data.spec import load_spec
    from abm_ml.features.build import SCORING_ROWS, build_rows
    from abm_ml.modeling.ranking import load_accounts

    earlier = str((pd.Timestamp(as_of) - pd.Timedelta(days=180)).date())
    # Built from the same CRM export as the outcomes (and the ranking of step 4), so that the
    # accounts carry the same ids ("001..." in a Salesforce export) on both sides of the join.
    spec = load_spec(spec_path)
    out = Path(spec.tables.out)  # type: ignore[union-attr]
    rows = out / f"scoring_rows-{earlier}.parquet"
    build_rows(spec, earlier).scoring.to_parquet(rows, index=False)
    with console.status(f"Ranking the accounts as of {earlier}..."):
        rank(
            accounts=str(rows),
            as_of=earlier,
            show=5,
            report=False,
        )
    console.print("[bold]Backtest[/] (in-sample here: the model trained on this world's outcomes)")
    backtest(
        outcomes=spec_path,
        since=earlier,
        history_url=None,
        model_version=None,
        ranking=None,
        review=50,
    )
    scorer, version = load_model("champion")
    for day, path in ((earlier, rows), (as_of, out / SCORING_ROWS)):
        console.print(f"[bold]Monitor[/] the accounts as of {day}")
        run_monitor(scorer, version, load_accounts(str(path), scorer=scorer), as_of=day)
