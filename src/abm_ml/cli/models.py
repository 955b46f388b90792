"""Model commands for ML engineers: train, evaluate, promote, roll back, list versions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from abm_ml import config as cfg
from abm_ml.cli.app import ModelOpt, SpecArg, app, console, load_model, metrics_table
from abm_ml.errors import AbmInputError
from abm_ml.redact import mask_credentials


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
    budget: Annotated[
        float | None,
        typer.Option(
            help="Seconds to spend trying model candidates, their cross-fitted comparison "
            "included (default: six fixed candidates, the same on any machine). A longer budget "
            "tries more; the result then depends on the machine's speed.",
            min=0,
        ),
    ] = None,
    register: Annotated[
        bool, typer.Option(help="Register the model in MLflow with alias 'challenger'.")
    ] = True,
    force: Annotated[
        bool,
        typer.Option(
            help="Register even a model worse than logistic regression or no better than chance."
        ),
    ] = False,
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
    from abm_ml.registry.card import registration_refusal, split_line, verdict

    # The store first: a mistyped or unreachable one fails now, not after the training.
    tracking.configure()
    with console.status("Validating data..."):
        dataset = load_dataset(load_spec(spec))
    console.print(
        f"{dataset.summary.accepted:,} rows accepted, {dataset.summary.rejected:,} rejected."
    )
    # The store opens while the models train; an error it meets is reported when logging.
    store_ready = tracking.prepare_store(dataset.spec.name)
    with console.status("Training propensity and velocity models..."):
        try:
            result = train_models(
                dataset,
                TrainConfig(seed=seed, capacity=capacity, n_boot=n_boot, search_budget_s=budget),
            )
        except Exception as error:
            store_ready.exception()
            # The store keeps a record of the attempt: a FAILED run with the one-line reason.
            tracking.log_failed_training(dataset.spec.name, error)
            raise
    store_ready.exception()
    console.print(split_line(result))
    for finding in result.leak_findings:
        colour = "red" if finding.refuses else "yellow"
        console.print(f"[{colour}]leakage guard[/]: {finding.message()}")
    console.print(
        metrics_table(
            f"Propensity to buy on the holdout ({result.split.method} split)",
            m.metrics_table(result.propensity),
        )
    )
    if result.velocity:
        console.print(
            metrics_table(
                "Deal velocity (won deals in the holdout)", m.metrics_table(result.velocity)
            )
        )
    refusal = registration_refusal(result)
    style = "bold red" if refusal else "bold green"
    console.print(f"[{style}]{verdict(result)}[/]")
    refused = register and refusal is not None and not force
    with console.status("Logging to MLflow..."):
        info = tracking.log_training(result, register=register and not refused)
    console.print(f"MLflow run {info['run_id']} at {mask_credentials(cfg.tracking_uri())}")
    if info["version"] and info["challenger"] == info["version"]:
        console.print(f"Registered {info['model_name']} version {info['version']} as 'challenger'.")
    elif info["version"]:
        console.print(
            f"Registered {info['model_name']} version {info['version']}; 'challenger' points at "
            f"version {info['challenger']}, registered by a training that finished at the same time."
        )
    console.print(f"Training report -> {write_training_report(result, info)}")
    if refused:
        raise AbmInputError(
            f"not registered as challenger because {refusal}; the run {info['run_id']} is "
            "logged with its verdict; pass --force to register it anyway",
            field="train",
        )


def write_training_report(result, info: dict) -> Path:
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
    scorer, version = load_model(model)
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
        metrics_table(
            f"Model v{version.version} on {dataset.spec.name}: {where}",
            m.metrics_table({"abm-ml": evaluation.propensity}),
        )
    )
    if evaluation.velocity:
        console.print(
            metrics_table(
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
