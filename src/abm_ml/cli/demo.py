"""The demo: the whole main job on a synthetic world, from one command."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from abm_ml import config as cfg
from abm_ml.cli.accounts import rank
from abm_ml.cli.app import app, console, metrics_table
from abm_ml.cli.data import rows, synth
from abm_ml.cli.models import write_training_report
from abm_ml.redact import mask_credentials


@app.command()
def demo(
    accounts: Annotated[int, typer.Option(help="Accounts in the synthetic world.")] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
) -> None:
    """The whole main job on synthetic data: synthesize, validate, train, register, promote, rank, report."""
    from abm_ml.data.spec import load_spec
    from abm_ml.data.validate import load_dataset
    from abm_ml.errors import AbmInputError, ModelNotPromotableError
    from abm_ml.modeling.train import TrainConfig, train_models
    from abm_ml.registry import tracking
    from abm_ml.registry.promotion import promote as do_promote

    started = time.perf_counter()
    world_dir = cfg.data_dir() / "synth"
    console.rule("1. Synthesize a world")
    # The world as a Salesforce export, its rows built point in time through a multi-table spec.
    synth(accounts=accounts, seed=seed, out=world_dir, as_of=None, format="salesforce")
    # The same world (same seed) as its own tables too, for the README's commands on
    # data/synth; every step below reads the Salesforce export.
    synth(accounts=accounts, seed=seed, out=world_dir, as_of=None, format="rows")
    spec_path = cfg.specs_dir() / "synthetic-salesforce.yaml"
    os.environ.setdefault("ABM_ML_SYNTH_DIR", str(world_dir))
    rows(spec=spec_path, as_of=None, as_json=False)
    console.rule("2. Validate and train")
    dataset = load_dataset(load_spec(spec_path))
    console.print(
        f"{dataset.summary.accepted:,} opportunities accepted, {dataset.summary.rejected:,} rejected."
    )
    with console.status("Training propensity and velocity models..."):
        result = train_models(dataset, TrainConfig(seed=seed))
    from abm_ml.modeling import metrics as m
    from abm_ml.registry.card import verdict

    console.print(
        metrics_table("Propensity to buy on the holdout", m.metrics_table(result.propensity))
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
    report_path = write_training_report(result, info)
    console.rule("4. Rank accounts")
    rank(
        accounts=str(Path(dataset.spec.tables.out) / "scoring_rows.parquet"),
        as_of=str(result.dataset.frame["created_at"].max().date()),
        show=10,
    )
    # --- 5. Backtest and monitor (abm_ml.cli.monitoring) ------------------------------------
    console.rule("5. Backtest and monitor")
    from abm_ml.cli.monitoring import demo_backtest_and_monitor

    demo_backtest_and_monitor(spec_path, str(result.dataset.frame["created_at"].max().date()))
    # --- end of step 5 ------------------------------------------------------------------------
    # --- 6. Propensity to buy within a horizon (docs/horizon.md) --------------------------------
    # Accounts without an open deal get their own model instead of an assumed outbound deal;
    # the ranking carries both propensities and ranks each account by the one that applies.
    console.rule(f"6. Propensity to buy within {cfg.horizon_days()} days, and both propensities")
    from abm_ml.cli.horizon import rank_buy, train_buy_model

    # From the Salesforce export through the same spec as the win model (not the world's tables).
    try:
        train_buy_model(spec=spec_path, seed=seed)
        decision = do_promote(name=cfg.buy_model_name())
        console.print(f"Buy-model champion: v{decision.version} ({decision.reason}).")
    except (AbmInputError, ModelNotPromotableError) as error:
        console.print(f"[yellow]Propensity to buy not promoted[/]: {error}")
    else:
        rank_buy(
            accounts=None,
            opportunities=None,
            spec=spec_path,
            as_of=None,
            buy_model="champion",
            win_model="champion",
            tiers="10,50,500",
            out=None,
            show=10,
            report=True,
        )
    # --- end of step 6 ---------------------------------------------------------------------------
    # ---- Campaign ROI and a pilot with a control group (abm_ml.roi; docs/roi.md) ----
    from abm_ml.cli.roi import demo_roi

    console.rule("7. Campaign ROI and a pilot with a control group (planted campaign world)")
    demo_roi(world_dir / "campaigns", cfg.reports_dir() / "roi", seed=seed)
    # ---- end of the ROI step ----
    console.rule("Done")
    console.print(f"Training report -> {report_path}")
    console.print(
        f"MLflow store    -> {mask_credentials(cfg.tracking_uri())}  (browse: .venv/bin/mlflow ui --backend-store-uri {mask_credentials(cfg.tracking_uri())})"
    )
    console.print(f"Rankings        -> {cfg.reports_dir() / 'rankings'}")
    console.print(
        "Serve scores    -> .venv/bin/abm-ml serve   (then POST records to http://127.0.0.1:3000/score)"
    )
    console.print(f"Demo took {time.perf_counter() - started:.0f} s.")
    # --- web pages (issue 18): the demo ends with the address of the pages ---
    console.print(
        "Pages for sales ops -> http://127.0.0.1:3000/  (start them with .venv/bin/abm-ml serve; "
        "the ranking above is already in the score history they read)"
    )
    # --- end web pages ---
