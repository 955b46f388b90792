"""The `abm-ml` command: synthesize, validate, train, promote, rank, explain, serve.

Exit codes: 0 ok; 2 bad input (a spec, a file, a column, a row, a refused promotion), with one
line naming the problem; 1 an internal error (set ABM_ML_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from abm_ml import config as cfg
from abm_ml.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, AbmInputError

app = typer.Typer(
    name="abm-ml",
    help=(
        "Which target accounts to work first, and why.\n\n"
        "Exit codes: 0 ok, 2 bad input (the message names the file, row or field), 1 internal error."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    add_completion=False,
)
console = Console(stderr=False)
err_console = Console(stderr=True)

SpecArg = Annotated[
    Path, typer.Argument(help="Dataset spec (YAML) describing a CRM export; see training/specs/.")
]


def _print_summary(summary: dict, rejects_path: Path | None) -> None:
    table = Table(title=f"Validation of {summary['dataset']}", show_header=False)
    table.add_row("rows read", f"{summary['rows_read']:,}")
    table.add_row("accepted", f"{summary['accepted']:,}")
    table.add_row(
        "rejected",
        f"{summary['rejected']:,}"
        + (f" (see {rejects_path})" if rejects_path and summary["rejected"] else ""),
    )
    for reason, count in summary["rejected_by_reason"].items():
        table.add_row(f"  {reason}", f"{count:,}")
    o = summary["outcomes"]
    table.add_row("outcomes", f"{o['won']:,} won, {o['lost']:,} lost, {o['open']:,} open")
    table.add_row("features", ", ".join(f"{k} ({v})" for k, v in summary["features"].items()))
    for note in summary["notes"]:
        table.add_row("note", note)
    console.print(table)


@app.command()
def validate(
    spec: SpecArg,
    rejects: Annotated[
        Path | None, typer.Option(help="Where to write rejected rows with their reasons (CSV).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Check a CRM export against its spec: every row accepted or rejected with a reason.

    Also runs the leakage guard on the closed deals and names any column it would refuse.
    """
    from abm_ml.data.leakage import check_leakage
    from abm_ml.data.spec import load_spec
    from abm_ml.data.validate import load_dataset

    dataset = load_dataset(load_spec(spec))
    rejects_path = rejects or cfg.reports_dir() / dataset.spec.name / "rejects.csv"
    rejects_path.parent.mkdir(parents=True, exist_ok=True)
    dataset.rejects.to_csv(rejects_path, index=False)
    findings = check_leakage(dataset.frame, dataset.features, dataset.spec)
    summary = dataset.summary.to_dict() | {
        "rejects_file": str(rejects_path),
        "leakage": [f.to_dict() for f in findings],
    }
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
        return
    _print_summary(summary, rejects_path)
    for finding in findings:
        console.print(f"[yellow]leakage guard[/]: {finding.message()}")


@app.command()
def synth(
    accounts: Annotated[
        int, typer.Option(min=10, help="Number of accounts in the synthetic world.")
    ] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same world.")] = 7,
    out: Annotated[Path | None, typer.Option(help="Output folder (default data/synth).")] = None,
    as_of: Annotated[
        str | None, typer.Option(help="Date for the scoring rows (default: the world's end).")
    ] = None,
) -> None:
    """Write a seeded synthetic ABM world: accounts, buying committees, engagement, intent, deals.

    Besides the raw tables it writes training_rows.parquet (each opportunity as of its creation)
    and scoring_rows.parquet (each account as of --as-of), used by training/specs/synthetic-abm.yaml.
    """
    from abm_ml.features.point_in_time import build_scoring_rows, build_training_rows
    from abm_ml.synthetic.generate import generate_world

    out = out or cfg.data_dir() / "synth"
    started = time.perf_counter()
    with console.status(f"Synthesizing {accounts:,} accounts..."):
        world = generate_world(n_accounts=accounts, seed=seed)
        world.save(out)
    with console.status("Building point-in-time features..."):
        training = build_training_rows(world)
        training.to_parquet(out / "training_rows.parquet", index=False)
        scoring = build_scoring_rows(world, as_of or world.as_of)
        scoring.to_parquet(out / "scoring_rows.parquet", index=False)
    console.print(
        f"Synthetic world in [bold]{out}[/]: {len(world.accounts):,} accounts, {len(world.contacts):,} contacts, "
        f"{len(world.activities):,} activities, {len(world.opportunities):,} opportunities "
        f"({time.perf_counter() - started:.1f} s)."
    )


@app.command()
def train(
    spec: SpecArg,
    seed: Annotated[
        int, typer.Option(help="Random seed (same data, spec and seed give the same metrics).")
    ] = 42,
    capacity: Annotated[
        int | None,
        typer.Option(help="Accounts the sales team can work: k of precision@k and recall@k."),
    ] = None,
    n_boot: Annotated[
        int, typer.Option(help="Bootstrap resamples for the confidence intervals.")
    ] = 200,
    register: Annotated[
        bool, typer.Option(help="Register the model in MLflow with alias 'challenger'.")
    ] = True,
) -> None:
    """Train the propensity-to-buy and deal-velocity models, log them to MLflow, register a challenger.

    Metrics come with 95 % bootstrap intervals, next to a logistic regression and a rule-based
    fit score on the same time-based (or stratified) split.
    """
    from abm_ml.data.spec import load_spec
    from abm_ml.data.validate import load_dataset
    from abm_ml.modeling import metrics as m
    from abm_ml.modeling.train import TrainConfig, train_models
    from abm_ml.registry import tracking
    from abm_ml.registry.card import verdict

    with console.status("Validating data..."):
        dataset = load_dataset(load_spec(spec))
    console.print(
        f"{dataset.summary.accepted:,} rows accepted, {dataset.summary.rejected:,} rejected."
    )
    with console.status("Training propensity and velocity models..."):
        result = train_models(dataset, TrainConfig(seed=seed, capacity=capacity, n_boot=n_boot))
    for finding in result.leak_findings:
        console.print(f"[yellow]leakage guard[/]: {finding.message()}")
    console.print(
        _metrics_rich_table(
            f"Propensity to buy on the holdout ({result.split.method} split)",
            m.metrics_table(result.propensity),
        )
    )
    if result.velocity:
        console.print(
            _metrics_rich_table(
                "Deal velocity (won deals in the holdout)", m.metrics_table(result.velocity)
            )
        )
    style = "bold red" if result.no_better_than_chance else "bold green"
    console.print(f"[{style}]{verdict(result)}[/]")
    with console.status("Logging to MLflow..."):
        tracking.configure()
        info = tracking.log_training(result, register=register)
    console.print(f"MLflow run {info['run_id']} at {cfg.tracking_uri()}")
    if info["version"]:
        console.print(f"Registered {info['model_name']} version {info['version']} as 'challenger'.")
    console.print(f"Training report -> {_training_report(result, info)}")


def _training_report(result, info: dict) -> Path:
    """Write the HTML training report and attach it to the MLflow run."""
    from abm_ml.registry.store import client
    from abm_ml.reporting.training_report import training_report

    name = (
        f"{result.dataset.spec.name}-v{info['version']}.html"
        if info.get("version")
        else f"{result.dataset.spec.name}-{info['run_id'][:8]}.html"
    )
    path = training_report(
        result,
        cfg.reports_dir() / "training" / name,
        run_id=info["run_id"],
        version=info.get("version"),
        model_name=info.get("model_name"),
    )
    client().log_artifact(info["run_id"], str(path), artifact_path="report")
    return path


@app.command()
def promote(
    version: Annotated[
        str | None, typer.Option(help="Version to promote (default: the 'challenger').")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            help="Promote without beating the champion (never a no-better-than-chance model)."
        ),
    ] = False,
    metric: Annotated[
        str,
        typer.Option(
            help="Holdout metric the challenger must beat the champion on, e.g. roc_auc or "
            "pr_auc (higher wins), ece, brier or log_loss (lower wins); a wrong name lists them all."
        ),
    ] = "roc_auc",
) -> None:
    """Make the challenger the champion if it beats the champion on the same recent holdout."""
    from abm_ml.modeling.evaluate import check_metric
    from abm_ml.registry.promotion import promote as do_promote
    from abm_ml.registry.store import configure

    check_metric(metric)
    configure()
    decision = do_promote(version=version, force=force, metric=metric)
    if decision.promoted:
        console.print(
            f"[bold green]Version {decision.version} is now champion[/] ({decision.reason})."
        )
    else:
        console.print(f"Nothing to do: version {decision.version} is {decision.reason}.")


@app.command()
def rollback() -> None:
    """Return 'champion' to the version it pointed at before the last promotion."""
    from abm_ml.registry.promotion import rollback as do_rollback
    from abm_ml.registry.store import configure

    configure()
    decision = do_rollback()
    console.print(f"[bold]Champion is version {decision.version} again[/] ({decision.reason}).")


@app.command()
def models() -> None:
    """List registered model versions with their aliases and holdout ROC AUC."""
    from abm_ml.registry.promotion import versions_table
    from abm_ml.registry.store import configure

    configure()
    frame = versions_table()
    if frame.empty:
        console.print("No registered versions yet: run `abm-ml train SPEC`.")
        return
    table = Table(title=cfg.registered_model_name())
    for column in frame.columns:
        table.add_column(column)
    for _, row in frame.iterrows():
        table.add_row(*[str(v) for v in row])
    console.print(table)


ModelOpt = Annotated[
    str,
    typer.Option(
        "--model", help="Registered model alias ('champion', 'challenger') or version number."
    ),
]


def _load_model(ref: str):
    """Entry point's loader: the configured store's scorer for an alias or version number."""
    from abm_ml.registry.store import configure, load_scorer

    configure()
    return load_scorer(cfg.registered_model_name(), ref)


def _metrics_rich_table(title: str, frame) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    for column in frame.columns:
        table.add_column(column)
    for idx, row in frame.iterrows():
        table.add_row(str(idx), *[str(v) for v in row])
    return table


@app.command()
def rank(
    accounts: Annotated[
        str,
        typer.Argument(
            help="Accounts to rank: a CSV/Parquet file, or a SQLAlchemy URL with --table or --query."
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
) -> None:
    """Rank accounts: who to work first, in which ABM tier, and why.

    Writes the ranked list, a file of accounts that could not be scored (with the reason),
    and an HTML report; prints the top of the list.
    """
    from abm_ml.modeling.ranking import load_accounts, parse_tiers, rank_accounts, write_ranked

    sizes = parse_tiers(tiers)
    scorer, version = _load_model(model)
    with console.status("Reading accounts..."):
        frame = load_accounts(accounts, table=table, query=query)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "Scoring accounts",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("score", total=len(frame))
        result = rank_accounts(
            scorer,
            frame,
            tiers=sizes,
            as_of=as_of,
            filters={"segment": segment or [], "region": region or [], "owner": owner or []},
            sort_by=sort_by,
            model_name=cfg.registered_model_name(),
            model_version=str(version.version),
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if history:
        from abm_ml.reporting.history import record_run

        url = history_url or cfg.history_url()
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        result.ranked = record_run(result.ranked, url)
    folder = cfg.reports_dir() / "rankings"
    out = out or folder / f"ranking-{result.meta['as_of']}.csv"
    write_ranked(result.ranked, out)
    unscorable_path = out.with_name(out.stem + "-unscorable.csv")
    result.unscorable.to_csv(unscorable_path, index=False)
    console.print(_ranking_table(result, version, show))
    console.print(f"Ranked {result.meta['ranked']:,} accounts -> {out}")
    if result.meta["unscorable"]:
        console.print(
            f"[yellow]{result.meta['unscorable']:,} accounts could not be scored[/] -> {unscorable_path}"
        )
    if report:
        from abm_ml.reporting.ranking_report import ranking_report

        html = ranking_report(result, out.with_suffix(".html"), model_card_md=_model_card(version))
        console.print(f"Report -> {html}")


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
    columns = [c for c in headers if c in result.ranked.columns]
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
                cells.append(f"{value:,.0f}")
            elif column == "top_reasons":
                cells.append(str(value).split("; ")[0].removeprefix("+ "))
            else:
                cells.append(str(value))
        shown.add_row(*cells)
    return shown


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
        typer.Option(help="Or a dataset spec whose rows hold it (the latest row is used)."),
    ] = None,
    model: ModelOpt = "champion",
    top: Annotated[int, typer.Option(help="Factors to list; the rest are summed.")] = 10,
    png: Annotated[
        Path | None, typer.Option(help="Write a SHAP waterfall plot to this PNG file.")
    ] = None,
) -> None:
    """Explain one account's score: the base rate, each factor's push up or down, the final probability."""
    from abm_ml.schema import ACCOUNT_ID, CREATED_AT, ROW_ID

    if (accounts is None) == (spec is None):
        raise AbmInputError("give exactly one of --accounts or --spec", field="explain")
    if spec is not None:
        from abm_ml.data.spec import load_spec
        from abm_ml.data.validate import load_dataset

        frame = load_dataset(load_spec(spec)).frame
    else:
        from abm_ml.modeling.ranking import load_accounts

        frame = load_accounts(accounts)
    ids = [c for c in (ACCOUNT_ID, ROW_ID) if c in frame.columns]
    if not ids:
        raise AbmInputError("the accounts have no 'account_id' column", field="account_id")
    match = frame[(frame[ids].astype(str) == account_id).any(axis=1)]
    if match.empty:
        raise AbmInputError(
            f"account {account_id!r} not found", source=str(accounts or spec), field="account_id"
        )
    if CREATED_AT in match.columns and match[CREATED_AT].notna().any():
        match = match.sort_values(CREATED_AT)
    record = match.tail(1)
    scorer, version = _load_model(model)
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
    console.print(f"Base rate: {totals['base_probability']:.1%} (an average account in training)")
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
        table.add_row(f"{len(rest)} other factors", "", f"{rest['log_odds'].sum():+.3f}")
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


@app.command()
def evaluate(
    spec: SpecArg,
    model: ModelOpt = "champion",
    since: Annotated[
        str | None, typer.Option(help="Only deals created on or after this date.")
    ] = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for the intervals.")] = 200,
) -> None:
    """Evaluate a registered model on a dataset's closed deals (on its recorded holdout when it is the training data)."""
    import pandas as pd

    from abm_ml.data.spec import load_spec
    from abm_ml.data.validate import load_dataset
    from abm_ml.modeling import metrics as m
    from abm_ml.modeling.evaluate import evaluate_scorer
    from abm_ml.registry.store import download_run_table
    from abm_ml.schema import CREATED_AT, ROW_ID

    dataset = load_dataset(load_spec(spec))
    scorer, version = _load_model(model)
    frame = dataset.frame
    where = "all closed deals"
    if since:
        frame = frame[frame[CREATED_AT] >= pd.Timestamp(since)]
        where = f"closed deals created since {since}"
    elif scorer.metadata.get("dataset_sha256") == dataset.sha256:
        holdout = download_run_table(version.run_id)
        frame = frame[frame[ROW_ID].isin(set(holdout[ROW_ID]))]
        where = "the training run's holdout (this is the data the model was trained on)"
    try:
        evaluation = evaluate_scorer(scorer, frame, n_boot=n_boot, where=where)
    except AbmInputError as error:
        raise AbmInputError(str(error), source=str(spec)) from None
    console.print(
        _metrics_rich_table(
            f"Model v{version.version} on {dataset.spec.name}: {where}",
            m.metrics_table({"abm-ml": evaluation.propensity}),
        )
    )
    if evaluation.velocity:
        console.print(
            _metrics_rich_table(
                "Deal velocity (won deals)",
                m.metrics_table(
                    {
                        "abm-ml": evaluation.velocity,
                        "median_days_baseline": evaluation.velocity_baseline,
                    }
                ),
            )
        )
    if evaluation.no_better_than_chance:
        console.print("[bold red]No better than chance on this data.[/]")


@app.command()
def deploy(
    model: ModelOpt = "champion",
) -> None:
    """Import a registered model version into the BentoML model store for serving."""
    from abm_ml.registry import tracking
    from abm_ml.service.deploy import deploy as do_deploy

    tracking.configure()
    tag = do_deploy(model)
    console.print(
        f"Imported into the BentoML store as {tag}. Start it with: abm-ml serve --model {model}"
    )


@app.command()
def serve(
    model: ModelOpt = "champion",
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 3000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Serve scores over HTTP (BentoML): /score, /rank, /explain, /healthz, /readyz, /metadata."""
    from abm_ml.registry import tracking
    from abm_ml.service.launch import serve as do_serve

    tracking.configure()
    do_serve(host=host, port=port, alias=model, workers=workers)


@app.command()
def demo(
    accounts: Annotated[int, typer.Option(help="Accounts in the synthetic world.")] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
) -> None:
    """The whole main job on synthetic data: synthesize, validate, train, register, promote, rank, report."""
    from abm_ml.data.spec import load_spec
    from abm_ml.data.validate import load_dataset
    from abm_ml.errors import ModelNotPromotableError
    from abm_ml.modeling.train import TrainConfig, train_models
    from abm_ml.registry import tracking
    from abm_ml.registry.promotion import promote as do_promote

    started = time.perf_counter()
    world_dir = cfg.data_dir() / "synth"
    console.rule("1. Synthesize a world")
    synth(accounts=accounts, seed=seed, out=world_dir, as_of=None)
    console.rule("2. Validate and train")
    spec_path = cfg.specs_dir() / "synthetic-abm.yaml"
    os.environ.setdefault("ABM_ML_SYNTH_DIR", str(world_dir))
    dataset = load_dataset(load_spec(spec_path))
    console.print(
        f"{dataset.summary.accepted:,} opportunities accepted, {dataset.summary.rejected:,} rejected."
    )
    with console.status("Training propensity and velocity models..."):
        result = train_models(dataset, TrainConfig(seed=seed))
    from abm_ml.modeling import metrics as m
    from abm_ml.registry.card import verdict

    console.print(
        _metrics_rich_table("Propensity to buy on the holdout", m.metrics_table(result.propensity))
    )
    console.print(verdict(result))
    console.rule("3. Register and promote")
    with console.status("Logging to MLflow..."):
        tracking.configure()
        info = tracking.log_training(result)
    console.print(
        f"Registered {info['model_name']} v{info['version']} as 'challenger' (run {info['run_id']})."
    )
    try:
        decision = do_promote()
        console.print(f"Champion: v{decision.version} ({decision.reason}).")
    except ModelNotPromotableError as error:
        console.print(f"[yellow]Not promoted[/]: {error}")
    report_path = _training_report(result, info)
    console.rule("4. Rank accounts")
    rank(
        accounts=str(world_dir / "scoring_rows.parquet"),
        table=None,
        query=None,
        model="champion",
        as_of=str(result.dataset.frame["created_at"].max().date()),
        tiers="10,50,500",
        segment=None,
        region=None,
        owner=None,
        sort_by="priority",
        out=None,
        show=10,
        history=True,
        history_url=None,
        report=True,
    )
    console.rule("Done")
    console.print(f"Training report -> {report_path}")
    console.print(
        f"MLflow store    -> {cfg.tracking_uri()}  (browse: .venv/bin/mlflow ui --backend-store-uri {cfg.tracking_uri()})"
    )
    console.print(f"Rankings        -> {cfg.reports_dir() / 'rankings'}")
    console.print(
        "Serve scores    -> .venv/bin/abm-ml serve   (then POST records to http://127.0.0.1:3000/score)"
    )
    console.print(f"Demo took {time.perf_counter() - started:.0f} s.")


def main() -> None:
    """Console entry point: user mistakes exit 2 with one line, anything else exits 1."""
    import logging

    # MLflow's INFO lines and artifact progress bars drown the tables sales ops read.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    try:
        app()
    except AbmInputError as error:
        err_console.print(
            f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True
        )
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as error:
        if os.environ.get("ABM_ML_DEBUG"):
            raise
        err_console.print(
            f"[bold red]internal error:[/] {type(error).__name__}: {escape(str(error))} (set ABM_ML_DEBUG=1 for details)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(EXIT_INTERNAL)


if __name__ == "__main__":
    main()
