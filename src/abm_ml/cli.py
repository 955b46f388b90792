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
from typing import Annotated, Optional

import typer
from rich.console import Console
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

SpecArg = Annotated[Path, typer.Argument(help="Dataset spec (YAML) describing a CRM export; see training/specs/.")]


def _print_summary(summary: dict, rejects_path: Path | None) -> None:
    table = Table(title=f"Validation of {summary['dataset']}", show_header=False)
    table.add_row("rows read", f"{summary['rows_read']:,}")
    table.add_row("accepted", f"{summary['accepted']:,}")
    table.add_row("rejected", f"{summary['rejected']:,}" + (f" (see {rejects_path})" if rejects_path and summary["rejected"] else ""))
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
    rejects: Annotated[Optional[Path], typer.Option(help="Where to write rejected rows with their reasons (CSV).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Check a CRM export against its spec: every row accepted or rejected with a reason.

    Also runs the leakage guard on the closed deals and names any column it would refuse.
    """
    from abm_ml.leakage import check_leakage
    from abm_ml.spec import load_spec
    from abm_ml.validate import load_dataset

    dataset = load_dataset(load_spec(spec))
    rejects_path = rejects or cfg.reports_dir() / dataset.spec.name / "rejects.csv"
    rejects_path.parent.mkdir(parents=True, exist_ok=True)
    dataset.rejects.to_csv(rejects_path, index=False)
    findings = check_leakage(dataset.frame, dataset.features, dataset.spec)
    summary = dataset.summary.to_dict() | {"rejects_file": str(rejects_path), "leakage": [f.to_dict() for f in findings]}
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
        return
    _print_summary(summary, rejects_path)
    for finding in findings:
        console.print(f"[yellow]leakage guard[/]: {finding.message()}")


@app.command()
def synth(
    accounts: Annotated[int, typer.Option(min=10, help="Number of accounts in the synthetic world.")] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same world.")] = 7,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default data/synth).")] = None,
    as_of: Annotated[Optional[str], typer.Option(help="Date for the scoring rows (default: the world's end).")] = None,
) -> None:
    """Write a seeded synthetic ABM world: accounts, buying committees, engagement, intent, deals.

    Besides the raw tables it writes training_rows.parquet (each opportunity as of its creation)
    and scoring_rows.parquet (each account as of --as-of), used by training/specs/synthetic-abm.yaml.
    """
    from abm_ml.features import build_scoring_rows, build_training_rows
    from abm_ml.synth import generate_world

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
    seed: Annotated[int, typer.Option(help="Random seed (same data, spec and seed give the same metrics).")] = 42,
    capacity: Annotated[Optional[int], typer.Option(help="Accounts the sales team can work: k of precision@k and recall@k.")] = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for the confidence intervals.")] = 200,
    register: Annotated[bool, typer.Option(help="Register the model in MLflow with alias 'challenger'.")] = True,
) -> None:
    """Train the propensity-to-buy and deal-velocity models, log them to MLflow, register a challenger.

    Metrics come with 95 % bootstrap intervals, next to a logistic regression and a rule-based
    fit score on the same time-based (or stratified) split.
    """
    from abm_ml import metrics as m
    from abm_ml import tracking
    from abm_ml.card import verdict
    from abm_ml.spec import load_spec
    from abm_ml.train import TrainConfig, train_models
    from abm_ml.validate import load_dataset

    with console.status("Validating data..."):
        dataset = load_dataset(load_spec(spec))
    console.print(f"{dataset.summary.accepted:,} rows accepted, {dataset.summary.rejected:,} rejected.")
    with console.status("Training propensity and velocity models..."):
        result = train_models(dataset, TrainConfig(seed=seed, capacity=capacity, n_boot=n_boot))
    for finding in result.leak_findings:
        console.print(f"[yellow]leakage guard[/]: {finding.message()}")
    table = Table(title=f"Propensity to buy on the holdout ({result.split.method} split)")
    frame = m.metrics_table(result.propensity)
    table.add_column("metric")
    for column in frame.columns:
        table.add_column(column)
    for idx, row in frame.iterrows():
        table.add_row(idx, *[str(v) for v in row])
    console.print(table)
    if result.velocity:
        vt = m.metrics_table(result.velocity)
        table = Table(title="Deal velocity (won deals in the holdout)")
        table.add_column("metric")
        for column in vt.columns:
            table.add_column(column)
        for idx, row in vt.iterrows():
            table.add_row(idx, *[str(v) for v in row])
        console.print(table)
    style = "bold red" if result.no_better_than_chance else "bold green"
    console.print(f"[{style}]{verdict(result)}[/]")
    with console.status("Logging to MLflow..."):
        info = tracking.log_training(result, register=register)
    console.print(f"MLflow run {info['run_id']} at {cfg.tracking_uri()}")
    if info["version"]:
        console.print(f"Registered {info['model_name']} version {info['version']} as 'challenger'.")


@app.command()
def promote(
    version: Annotated[Optional[str], typer.Option(help="Version to promote (default: the 'challenger').")] = None,
    force: Annotated[bool, typer.Option(help="Promote without beating the champion (never a no-better-than-chance model).")] = False,
    metric: Annotated[str, typer.Option(help="Holdout metric the challenger must beat the champion on.")] = "roc_auc",
) -> None:
    """Make the challenger the champion if it beats the champion on the same recent holdout."""
    from abm_ml.registry import promote as do_promote

    decision = do_promote(version=version, force=force, metric=metric)
    if decision.promoted:
        console.print(f"[bold green]Version {decision.version} is now champion[/] ({decision.reason}).")
    else:
        console.print(f"Nothing to do: version {decision.version} is {decision.reason}.")


@app.command()
def rollback() -> None:
    """Return 'champion' to the version it pointed at before the last promotion."""
    from abm_ml.registry import rollback as do_rollback

    decision = do_rollback()
    console.print(f"[bold]Champion is version {decision.version} again[/] ({decision.reason}).")


@app.command()
def models() -> None:
    """List registered model versions with their aliases and holdout ROC AUC."""
    from abm_ml.registry import versions_table

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


def main() -> None:
    """Console entry point: user mistakes exit 2 with one line, anything else exits 1."""
    try:
        app()
    except AbmInputError as error:
        err_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - the last line of defence
        if os.environ.get("ABM_ML_DEBUG"):
            raise
        err_console.print(f"[bold red]internal error:[/] {type(error).__name__}: {error} (set ABM_ML_DEBUG=1 for details)", highlight=False)
        sys.exit(EXIT_INTERNAL)


if __name__ == "__main__":
    main()
