"""Account commands for sales ops: rank accounts, explain one account's score."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.markup import escape
from rich.table import Table

from abm_ml import config as cfg
from abm_ml.cli.app import (
    ModelOpt,
    QueryOpt,
    TableOpt,
    app,
    console,
    err_console,
    load_model,
    registered_input,
)
from abm_ml.data.records import require_id_column
from abm_ml.errors import AbmInputError


@app.command()
def rank(
    accounts: Annotated[
        str,
        typer.Argument(
            help="Accounts to rank: a CSV/Parquet file, or a SQLAlchemy URL with --table or --query."
        ),
    ],
    table: TableOpt = None,
    query: QueryOpt = None,
    model: ModelOpt = "champion",
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Date the ranking is as of (default today).")
    ] = None,
    tiers: Annotated[
        str,
        typer.Option(
            help="Accounts in ABM tiers 1:1, 1:few, 1:many, in that order; the rest are nurture."
        ),
    ] = "10,50,500",
    segment: Annotated[
        list[str] | None, typer.Option(help="Only these segments (repeat the option for several).")
    ] = None,
    region: Annotated[list[str] | None, typer.Option(help="Only these regions.")] = None,
    owner: Annotated[list[str] | None, typer.Option(help="Only accounts of these owners.")] = None,
    sort_by: Annotated[
        str,
        typer.Option(
            help="Order by priority (p_win x deal size / days), propensity or expected_value."
        ),
    ] = "priority",
    out: Annotated[
        Path | None,
        typer.Option(
            help="Ranked list (.csv or .parquet); default reports/rankings/ranking-AS_OF.csv."
        ),
    ] = None,
    show: Annotated[int, typer.Option(help="Rows to show in the terminal.")] = 15,
    history: Annotated[
        bool,
        typer.Option(
            help="Store the run in the score history and show movement since the last run."
        ),
    ] = True,
    history_url: Annotated[
        str | None,
        typer.Option(help="SQLAlchemy URL of the score history (default SQLite under reports/)."),
    ] = None,
    report: Annotated[bool, typer.Option(help="Write the HTML ranking report.")] = True,
    monitor: Annotated[
        bool,
        typer.Option(
            help="Also check the accounts read for drift (abm-ml monitor; reads them again, "
            "whole); exit code 3 on drift."
        ),
    ] = False,
    reasons_for: Annotated[
        int | None,
        typer.Option(
            help="Explain only the top N accounts of the ranking (reasons are most of the "
            "scoring time on very large lists); default: every account.",
            min=0,
        ),
    ] = None,
    velocity_reasons: Annotated[
        bool,
        typer.Option(
            help="Also say what moves each account's days to close (doubles the explaining time)."
        ),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(help="Chunks scored in parallel (default: one per core).", min=1),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            help="local: one process. spark: the same scorer on Spark (spark-submit's cluster, "
            "else ABM_ML_SPARK_MASTER or local[2]); ACCOUNTS may also be a folder or table:NAME, "
            "and --out a folder of Parquet by as-of date (docs/spark.md)."
        ),
    ] = "local",
) -> None:
    """Rank accounts: who to work first, in which ABM tier, and why.

    Writes the ranked list, a file of accounts that could not be scored (with the reason),
    and an HTML report; prints the top of the list. Large lists are read, scored and written
    in chunks, so memory does not grow with the list.
    """
    from abm_ml.modeling.rank_stream import StreamedRanking
    from abm_ml.modeling.ranking import check_accounts_source, parse_tiers, ranking_date

    sizes = parse_tiers(tiers)
    if engine != "local":
        if table or query:
            raise AbmInputError(
                "with --engine spark, name a catalog table as ACCOUNTS: table:db.accounts",
                field="--table/--query",
            )
        local_only = {
            "--monitor": monitor,
            "--reasons-for": reasons_for is not None,
            "--velocity-reasons": velocity_reasons,
            "--workers": workers is not None,
        }
        chosen = [name for name, given in local_only.items() if given]
        if chosen:
            raise AbmInputError(
                f"{', '.join(chosen)} work with the local engine only; on Spark every account "
                "gets reasons, Spark's executors set the parallelism, and `abm-ml monitor` "
                "reads the written ranking",
                field=chosen[0],
            )
        _rank_on_spark(
            accounts,
            engine,
            model,
            sizes,
            as_of,
            sort_by,
            out,
            show,
            filters={"segment": segment or [], "region": region or [], "owner": owner or []},
        )
        return
    check_accounts_source(accounts, table=table, query=query)
    _require_file(accounts)
    # The first chunk is read and its id column checked before the model is downloaded, with
    # the input spec the registered version carries as a tag (older versions: after loading).
    input_spec = registered_input(model)
    if input_spec is not None:
        chunks, first = _first_chunk(accounts, table, query, input_spec)
    scorer, version = load_model(model)
    if input_spec is None:
        chunks, first = _first_chunk(accounts, table, query, scorer.input)
    as_of = ranking_date(as_of)
    out = out or cfg.reports_dir() / "rankings" / f"ranking-{as_of}.csv"
    unscorable_path = out.with_name(out.stem + "-unscorable.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    from rich.progress import Progress, SpinnerColumn, TimeElapsedColumn

    # The chunks spill next to the ranked file (the user's disk, not a small /tmp).
    with (
        tempfile.TemporaryDirectory(prefix=".abm-ml-rank-", dir=out.parent) as spill,
        Progress(
            SpinnerColumn(),
            "Scoring accounts: {task.completed:,} read",
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar,
        StreamedRanking(
            scorer,
            Path(spill),
            unscorable_path=unscorable_path,
            tiers=sizes,
            as_of=as_of,
            filters={"segment": segment or [], "region": region or [], "owner": owner or []},
            sort_by=sort_by,
            model_name=cfg.registered_model_name(),
            model_version=str(version.version),
            reasons_for=reasons_for,
            velocity_reasons=velocity_reasons,
            workers=workers,
            details=history,
        ) as run,
    ):
        task = bar.add_task("score", total=None)
        read = 0
        for chunk in itertools.chain([first], chunks):
            run.add(
                chunk, progress=lambda done, _total, at=read: bar.update(task, completed=at + done)
            )
            read += len(chunk)
            bar.update(task, completed=read)
        run.finish()
        if not run.scored:
            _nothing_to_rank(run.unscorable_counts(), read, unscorable_path, str(accounts))
        ranked = run.light()
        movement = None
        try:
            if history:
                ranked, movement = _record_history(
                    run, ranked, history_url or cfg.history_url(), out
                )
        finally:
            # Written whatever happens to the history: a history failure never loses the ranking.
            run.write(out, movement)
        result = run.result(ranked)
    console.print(_ranking_table(result, version, show))
    console.print(_basis_line(result.meta))
    console.print(f"Ranked {result.meta['ranked']:,} accounts -> {out}")
    if result.meta["reasons_for"] < result.meta["ranked"]:
        console.print(
            f"Reasons for the top {result.meta['reasons_for']:,} accounts; the explaining "
            f"(TreeSHAP) of {result.meta['ranked'] - result.meta['reasons_for']:,} others skipped"
        )
    if result.meta["unscorable"]:
        console.print(
            f"[yellow]{result.meta['unscorable']:,} accounts could not be scored[/] -> {unscorable_path}"
        )
    if report:
        from abm_ml.reporting.ranking_report import ranking_report

        html = ranking_report(result, out.with_suffix(".html"), model_card_md=_model_card(version))
        console.print(f"Report -> {html}")
    if monitor:
        # Last, so a drift verdict (exit 3) never costs the ranking, its history or its report.
        # The drift check reads the accounts again, whole.
        from abm_ml.cli.monitoring import run_monitor
        from abm_ml.modeling.ranking import load_accounts
        from abm_ml.monitoring.drift import EXIT_DRIFT

        frame = load_accounts(accounts, table=table, query=query, scorer=scorer)
        if run_monitor(scorer, version, frame, as_of=result.meta["as_of"]).drifted:
            raise typer.Exit(EXIT_DRIFT)


def _first_chunk(accounts: str, table, query, input_spec) -> tuple:
    """The accounts as chunks (an iterator) and the first chunk, its id column checked."""
    from abm_ml.data.records import iter_records
    from abm_ml.modeling.rank_stream import READ_ROWS

    with console.status("Reading accounts..."):
        chunks = iter_records(accounts, input_spec, table=table, query=query, rows=READ_ROWS)
        first = next(chunks)
    require_id_column(first, input_spec, accounts)
    return chunks, first


def _rank_on_spark(accounts, engine, model, sizes, as_of, sort_by, out, show, filters) -> None:
    """``rank --engine spark``: the same ranking on Spark, written as Parquet by as-of date."""
    from abm_ml.modeling.ranking import RankResult

    if engine != "spark":
        raise AbmInputError(f"engine is local or spark, not {engine!r}", field="--engine")
    try:
        from abm_ml.spark import get_session, rank
        from abm_ml.spark.job import read_accounts, write_ranking
    except ImportError:
        raise AbmInputError(
            "--engine spark needs pyspark: uv sync --group spark (and a Java runtime)",
            field="--engine",
        ) from None
    input_spec = registered_input(model)
    spark = get_session(app_name="abm-ml rank")
    frame = read_accounts(spark, accounts, input_spec)
    scorer, version = load_model(model)
    with console.status("Ranking on Spark..."):
        result = rank(
            frame,
            scorer,
            tiers=sizes,
            as_of=as_of,
            filters=filters,
            sort_by=sort_by,
            model_name=cfg.registered_model_name(),
            model_version=str(version.version),
        )
        folder = str(out or cfg.reports_dir() / "rankings" / "spark")
        written = write_ranking(result, folder, show=show)
    head = RankResult(ranked=written.head, unscorable=written.head.iloc[:0], meta=result.meta)
    console.print(_ranking_table(head, version, show))
    amounts = (
        "per row from the file, else the training median of won deals"
        if scorer.has_amount
        else "no deal amount in training: no expected value"
    )
    console.print(_basis_line({**result.meta, "amount_note": amounts}))
    console.print(f"Ranked {written.ranked:,} accounts -> {written.ranked_path}")
    if written.unscorable:
        console.print(
            f"[yellow]{written.unscorable:,} accounts could not be scored[/] -> "
            f"{written.unscorable_path}"
        )
    # Said, not skipped silently: the Spark engine's history is its output folder.
    console.print(
        f"Score history: {written.ranked_path} keeps one partition per as-of date; "
        "no HTML report or movement column with --engine spark."
    )


def _record_history(run, ranked: pd.DataFrame, url: str, out: Path) -> tuple:
    """Store the run in the score history; ``ranked`` with each account's movement.

    The history's details keep each account's model inputs, so the account page can show every
    factor's push with the model that issued the run (:mod:`abm_ml.web.waterfall`).

    A history that cannot be written (unreachable, locked, not a history table) costs the
    movement column only: one warning line, the ranking is written all the same, exit 0.

    Returns:
        ``ranked`` (with ``movement``) and the movement texts in rank order, or ``ranked``
        unchanged and None when the history could not be written.
    """
    from abm_ml.modeling.rank_stream import release_memory
    from abm_ml.reporting.history import record_parts, with_movement

    try:
        previous = record_parts(run.history_parts(), url, create_sqlite_folder=True)
    except AbmInputError as error:
        err_console.print(
            f"[bold yellow]warning:[/] score history not updated, no movement shown ({escape(str(error))}); "
            f"the ranking is written to {escape(str(out))}",
            highlight=False,
            soft_wrap=True,
        )
        return ranked, None
    ranked = with_movement(ranked, previous)
    del previous
    release_memory()
    return ranked, ranked["movement"].to_numpy(dtype=object)


def _require_file(accounts: str) -> None:
    """A missing accounts file is reported before the model is loaded."""
    if "://" not in accounts and not Path(accounts).exists():
        raise AbmInputError("file not found", source=accounts)


def _basis_line(meta: dict) -> str:
    """One line saying what priority, days and amounts are made of (none is invented)."""
    days = meta.get("days_to_close") or "none"
    return (
        f"Priority = {meta.get('priority')}. Days to close: {days}. "
        f"Amounts: {meta.get('amount_note')}."
    )


def _ranking_table(result, version, show: int) -> Table:
    """The top ``show`` ranked accounts as a terminal table (the files hold every column)."""
    shown = Table(
        title=f"Top accounts as of {result.meta['as_of']} (model v{version.version}); full reasons in the files"
    )
    headers = {
        "rank": "#",
        "account_id": "account",
        "abm_tier": "tier",
        "score": "score",
        "days_to_close_p50": "days",
        "expected_value": "exp. value",
        "top_reasons": "top reason",
        "movement": "since last run",
    }
    ranked = result.ranked
    # No column of blanks: a model without dates has no days, one without amounts no value.
    columns = [
        c
        for c in headers
        if c in ranked.columns
        and not (c in ("days_to_close_p50", "expected_value") and ranked[c].isna().all())
    ]
    for column in columns:
        shown.add_column(
            headers[column],
            no_wrap=column != "top_reasons",
            overflow="ellipsis",
            min_width=24 if column == "top_reasons" else None,
            max_width=18 if column == "movement" else None,
            justify="right"
            if column in ("rank", "score", "days_to_close_p50", "expected_value")
            else "left",
        )
    for _, row in result.ranked.head(show).iterrows():
        cells = []
        for column in columns:
            value = row[column]
            if column in ("days_to_close_p50", "expected_value"):
                cells.append("-" if pd.isna(value) else f"{value:,.0f}")
            elif column == "top_reasons":
                cells.append(str(value).split("; ")[0].removeprefix("+ "))
            else:
                cells.append(str(value))
        shown.add_row(*cells)
    return shown


def _nothing_to_rank(reasons: pd.Series, read: int, unscorable_path: Path, source: str) -> None:
    """Raise one clear error for a list in which no account could be ranked."""
    if reasons.empty:
        why = f"{read:,} rows read, none left after the filters" if read else "the list is empty"
        raise AbmInputError(f"no account to rank: {why}", source=source)
    shown = "; ".join(f"{n:,} x {reason}" for reason, n in reasons.head(3).items())
    more = f"; {len(reasons) - 3:,} other reasons" if len(reasons) > 3 else ""
    raise AbmInputError(
        f"no account to rank: none of the {read:,} rows can be scored ({shown}{more}); "
        f"each row with its reason -> {unscorable_path}",
        source=source,
    )


def _model_card(version) -> str | None:
    import mlflow

    try:
        return mlflow.artifacts.load_text(f"runs:/{version.run_id}/model_card.md")
    except Exception:  # noqa: BLE001 - a report without the card is still useful
        return None


@app.command()
def explain(
    account_id: Annotated[str, typer.Argument(help="The account (or opportunity) id to explain.")],
    accounts: Annotated[
        str | None, typer.Option(help="Accounts file (CSV/Parquet) holding the account.")
    ] = None,
    spec: Annotated[
        Path | None,
        typer.Option(
            help="Or a dataset spec whose rows hold it (its latest open deal, else latest row)."
        ),
    ] = None,
    model: ModelOpt = "champion",
    top: Annotated[int, typer.Option(help="Factors to list; the rest are summed.")] = 10,
    png: Annotated[
        Path | None, typer.Option(help="Write a SHAP waterfall plot to this PNG file.")
    ] = None,
) -> None:
    """Explain one account's score: the base rate, each factor's push up or down, the final probability."""
    from abm_ml.modeling.ranking import row_ranked_for
    from abm_ml.schema import ACCOUNT_ID, CREATED_AT, OPEN, OUTCOME, ROW_ID

    if (accounts is None) == (spec is None):
        raise AbmInputError("give exactly one of --accounts or --spec", field="explain")
    if accounts is not None:
        _require_file(accounts)
    scorer, version = load_model(model)
    if spec is None:
        from abm_ml.modeling.ranking import load_accounts

        frame = load_accounts(accounts, scorer=scorer)
        require_id_column(frame, scorer.input, accounts)
        # The row `abm-ml rank` scores for this account, so both print the same number.
        record = row_ranked_for(scorer, frame, account_id, str(accounts))
    else:
        from abm_ml.data.spec import load_spec
        from abm_ml.data.validate import load_dataset

        frame = load_dataset(load_spec(spec)).frame
        ids = [c for c in (ACCOUNT_ID, ROW_ID) if c in frame.columns]
        match = frame[(frame[ids].astype(str) == account_id).any(axis=1)]
        if match.empty:
            raise AbmInputError(
                f"account {account_id!r} not found", source=str(spec), field="account_id"
            )
        if (match[OUTCOME] == OPEN).any():  # the deal being worked, else the last one closed
            match = match[match[OUTCOME] == OPEN]
        if CREATED_AT in match.columns and match[CREATED_AT].notna().any():
            match = match.sort_values(CREATED_AT)
        record = match.tail(1)
    explained = scorer.explain(record)
    factors = explained.factors(0)
    totals = {
        "base_log_odds": float(explained.base_log_odds[0]),
        "base_probability": float(explained.base_probability[0]),
        "propensity": float(explained.propensity[0]),
    }
    console.print(
        f"[bold]Account {account_id}[/] (model v{version.version}, contributions in log-odds of the uncalibrated model)"
    )
    console.print(
        f"Base rate: {totals['base_probability']:.1%} (the average training account's "
        "propensity; base + pushes = propensity)"
    )
    table = Table()
    table.add_column("factor")
    table.add_column("push", justify="right")
    table.add_column("log-odds", justify="right")
    for row in factors.head(top).itertuples():
        colour = "green" if row.log_odds > 0 else "red"
        table.add_row(
            row.text,
            f"[{colour}]{row.probability_points * 100:+.1f} pts[/]",
            f"{row.log_odds:+.3f}",
        )
    rest = factors.iloc[top:]
    if len(rest):
        table.add_row(
            f"{len(rest)} other factors",
            f"{rest['probability_points'].sum() * 100:+.1f} pts",
            f"{rest['log_odds'].sum():+.3f}",
        )
    console.print(table)
    console.print(
        f"[bold]Propensity: {totals['propensity']:.1%}[/] (score {max(1, min(99, round(totals['propensity'] * 100)))})"
    )
    if png:
        from abm_ml.reporting.plots import waterfall_plot

        waterfall_plot(
            factors,
            totals["base_log_odds"],
            png,
            title=f"Why account {account_id} scores {totals['propensity']:.0%}",
        )
        console.print(f"Waterfall -> {png}")
