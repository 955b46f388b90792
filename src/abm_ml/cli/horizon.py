"""Propensity to buy within a horizon: train it (``train-buy``), rank with both models (``rank-buy``).

``train-buy`` builds monthly account snapshots, trains them through the same pipeline as
``train`` and registers the model under its own name (``ABM_ML_BUY_MODEL_NAME``, default
``abm-buy-propensity``) with the same ``challenger``/``champion`` aliases. ``rank-buy`` ranks
every account by the propensity that applies: the win propensity of its open deal (the
opportunity model), else its propensity to buy within the horizon (this model).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pandas as pd
import typer
from rich.table import Table

from abm_ml import config as cfg
from abm_ml.cli.app import app, console, metrics_table
from abm_ml.errors import AbmInputError
from abm_ml.redact import mask_credentials
from abm_ml.schema import ACCOUNT_ID, CLOSED_AT, CREATED_AT, OUTCOME

if TYPE_CHECKING:
    from abm_ml.data.spec import DatasetSpec
    from abm_ml.modeling.horizon import RowsAsOf

WorldOpt = Annotated[
    Path | None,
    typer.Option(help="Synthetic world folder written by `abm-ml synth` (default data/synth)."),
]
HorizonOpt = Annotated[
    int | None,
    typer.Option(
        "--horizon-days",
        min=1,
        help="Days after a snapshot in which a deal must be created (and later won) to count "
        "as a purchase (default ABM_ML_HORIZON_DAYS or 180).",
    ),
]


SpecOpt = Annotated[
    Path | None,
    typer.Option(
        "--spec",
        help="A multi-table spec (`tables:`, docs/crm-objects.md) whose CRM objects give the "
        "accounts and opportunities; instead of --world.",
    ),
]
KnownUntilOpt = Annotated[
    str | None,
    typer.Option(
        "--known-until",
        help="With --spec: when the CRM was exported (deals open then have no outcome yet; "
        "default: the latest event in its tables).",
    ),
]


def _world(world: Path | None):
    from abm_ml.synthetic.world import load_world

    folder = world or cfg.data_dir() / "synth"
    if not (folder / "accounts.parquet").is_file():
        raise AbmInputError("no synthetic world here: run `abm-ml synth` first", source=str(folder))
    return load_world(folder)


def _date(value: str | None, option: str) -> pd.Timestamp | None:
    try:
        return pd.Timestamp(value) if value else None
    except ValueError:
        raise AbmInputError(f"not a date: {value!r}", field=option) from None


def _spec_tables(spec: Path):
    """The spec and its CRM tables, each row used or rejected (the rejects are counted here)."""
    from abm_ml.data.spec import load_spec
    from abm_ml.data.tables import load_tables

    loaded = load_spec(spec)
    if loaded.tables is None:
        raise AbmInputError(
            "this spec has no `tables:` part (see docs/crm-objects.md)", source=str(spec)
        )
    with console.status("Reading CRM objects..."):
        tables = load_tables(loaded.tables)
    if len(tables.rejects):
        console.print(
            f"{len(tables.rejects):,} CRM rows rejected (see `abm-ml rows {spec}` for the list)."
        )
    return loaded, tables


def snapshot_source(
    world: Path | None, spec: Path | None, known_until: str | None
) -> tuple[DatasetSpec | None, RowsAsOf, pd.DataFrame, pd.Timestamp, pd.Timestamp]:
    """Where the snapshots come from: a multi-table spec or a synthetic world folder.

    Returns:
        ``(spec, rows_as_of, opportunities, first_day, known_until)``; ``spec`` is the loaded
        multi-table spec (the natural base spec), None for a world.
    """
    from abm_ml.modeling import horizon as hz

    if world is not None and spec is not None:
        raise AbmInputError("give --world or --spec, not both", field="--spec")
    if spec is None:
        if known_until is not None:
            raise AbmInputError("--known-until needs --spec", field="--known-until")
        the_world = _world(world)
        rows_as_of, opportunities = hz.world_source(the_world)
        return None, rows_as_of, opportunities, the_world.start, the_world.as_of
    loaded, tables = _spec_tables(spec)
    rows_as_of, opportunities = hz.world_source(tables)
    first_day, latest = hz.history_span(tables)
    return (
        loaded,
        rows_as_of,
        opportunities,
        first_day,
        _date(known_until, "--known-until") or latest,
    )


def train_buy_model(
    *,
    world: Path | None = None,
    spec: Path | None = None,
    known_until: str | None = None,
    base_spec: Path | None = None,
    horizon_days: int | None = None,
    seed: int = 42,
    n_boot: int = 200,
    register: bool = True,
    force: bool = False,
    out: Path | None = None,
):
    """Snapshots, training, comparison, MLflow logging and registration; returns (result, info)."""
    from abm_ml.cli.models import write_training_report
    from abm_ml.data.spec import load_spec
    from abm_ml.modeling import horizon as hz
    from abm_ml.modeling.train import TrainConfig
    from abm_ml.registry import tracking
    from abm_ml.registry.card import registration_refusal, verdict
    from abm_ml.registry.store import client

    horizon_days = horizon_days or cfg.horizon_days()
    tracking.configure()
    tables_spec, rows_as_of, opportunities, first_day, known = snapshot_source(
        world, spec, known_until
    )
    # A CRM spec trains the opportunity model too: its features and wording are the base.
    base = (
        load_spec(base_spec)
        if base_spec
        else tables_spec or load_spec(cfg.specs_dir() / "synthetic-abm.yaml")
    )
    with console.status("Building monthly account snapshots..."):
        dataset, summary = hz.horizon_dataset(
            rows_as_of,
            opportunities,
            base,
            out or cfg.data_dir() / "horizon",
            horizon_days=horizon_days,
            known_until=known,
            first_day=first_day,
        )
    for line in summary.lines():
        console.print(line)
    with console.status(f"Training propensity to buy within {horizon_days} days..."):
        result = hz.train_horizon(
            dataset, TrainConfig(seed=seed, n_boot=n_boot), horizon_days=horizon_days
        )
    console.print(
        metrics_table(
            f"Propensity to buy within {horizon_days} days on the holdout ({result.split.method} "
            "split by snapshot date)",
            hz.metrics_frame(result),
        )
    )
    gains = hz.auc_gains(result)
    for line in hz.comparison_lines(result):
        console.print(line)
    refusal = registration_refusal(result)
    console.print(f"[{'bold red' if refusal else 'bold green'}]{verdict(result)}[/]")
    refused = register and refusal is not None and not force
    with console.status("Logging to MLflow..."):
        info = tracking.log_training(
            result, register=register and not refused, model_name=cfg.buy_model_name()
        )
        store = client()
        store.log_dict(info["run_id"], summary.to_dict(), "horizon/snapshots.json")
        for name, gain in gains.items():
            for part in ("value", "low", "high"):
                suffix = "" if part == "value" else f"_{part}"
                store.log_metric(
                    info["run_id"], f"roc_auc_gain_over_{name}{suffix}", getattr(gain, part)
                )
    console.print(f"MLflow run {info['run_id']} at {mask_credentials(cfg.tracking_uri())}")
    if info["version"]:
        # The registry's default description is the opportunity model's: say what this one is.
        store.update_registered_model(
            info["model_name"],
            description=f"abm-ml propensity to buy: a deal created within {horizon_days} days "
            "and later won, for accounts with no open deal (docs/horizon.md).",
        )
        console.print(f"Registered {info['model_name']} version {info['version']} as 'challenger'.")
    console.print(f"Training report -> {write_training_report(result, info)}")
    if refused:
        raise AbmInputError(
            f"not registered as challenger because {refusal}; pass --force to register it anyway",
            field="train-buy",
        )
    return result, info


@app.command("train-buy")
def train_buy(
    world: WorldOpt = None,
    spec: SpecOpt = None,
    known_until: KnownUntilOpt = None,
    base_spec: Annotated[
        Path | None,
        typer.Option(
            help="The opportunity model's spec whose features and reason wording are reused "
            "(default: the --spec, else training/specs/synthetic-abm.yaml)."
        ),
    ] = None,
    horizon_days: HorizonOpt = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for the intervals.")] = 200,
    register: Annotated[
        bool, typer.Option(help="Register the model in MLflow with alias 'challenger'.")
    ] = True,
    force: Annotated[
        bool, typer.Option(help="Register even a model worse than logistic regression.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for the snapshot table and its spec (default data/horizon)."),
    ] = None,
) -> None:
    """Train the propensity to buy within a horizon, for accounts with no open deal.

    Monthly snapshots of every account (features as of the snapshot) are labelled by whether a
    deal created within the horizon was later won; accounts with a deal open at the snapshot
    are left to the opportunity model. Compared on the holdout with a firmographic-only model,
    the rule-based fit score and logistic regression (95 % intervals, paired AUC gains).
    """
    train_buy_model(
        world=world,
        spec=spec,
        known_until=known_until,
        base_spec=base_spec,
        horizon_days=horizon_days,
        seed=seed,
        n_boot=n_boot,
        register=register,
        force=force,
        out=out,
    )


def read_opportunities(path: Path) -> pd.DataFrame:
    """The opportunities table (CSV or Parquet) with ``account_id``, ``created_at``,
    ``closed_at`` and ``outcome`` (won, lost or open)."""
    from abm_ml.modeling.horizon import check_opportunities

    if not path.is_file():
        raise AbmInputError("file not found", source=str(path))
    frame = (
        pd.read_parquet(path) if path.suffix.lower() in {".parquet", ".pq"} else pd.read_csv(path)
    )
    check_opportunities(frame, source=str(path))
    for column in ("created_at", "closed_at"):
        parsed = pd.to_datetime(frame[column], errors="coerce")
        bad = parsed.isna() & frame[column].notna()
        if bad.any():
            line = int(bad.to_numpy().nonzero()[0][0]) + 2
            raise AbmInputError(
                f"unparseable date {frame[column][bad].iloc[0]!r}",
                source=str(path),
                field=f"{column}, line {line}",
            )
        frame[column] = parsed
    return frame


@app.command("rank-buy")
def rank_buy(
    accounts: Annotated[
        Path | None,
        typer.Argument(
            help="Accounts to rank (CSV/Parquet with both models' features); with --spec, "
            "default: the spec's accounts as of --as-of, built from its CRM objects."
        ),
    ] = None,
    opportunities: Annotated[
        Path | None,
        typer.Option(
            help="Opportunities (account_id, created_at, closed_at, outcome) deciding which "
            "accounts have an open deal (default: the --spec's, else "
            "data/synth/opportunities.parquet)."
        ),
    ] = None,
    spec: SpecOpt = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="Ranking date (default: the accounts' as_of column, else today)."
        ),
    ] = None,
    buy_model: Annotated[
        str, typer.Option(help="Alias or version of the propensity-to-buy model.")
    ] = "champion",
    win_model: Annotated[
        str, typer.Option(help="Alias or version of the opportunity (win) model.")
    ] = "champion",
    tiers: Annotated[
        str, typer.Option(help="Accounts in ABM tiers 1:1, 1:few, 1:many; the rest nurture.")
    ] = "10,50,500",
    out: Annotated[
        Path | None,
        typer.Option(help="Ranked list (.csv/.parquet); default reports/rankings/buy-AS_OF.csv."),
    ] = None,
    show: Annotated[int, typer.Option(help="Rows to show in the terminal.")] = 15,
    report: Annotated[bool, typer.Option(help="Write the HTML ranking report.")] = True,
) -> None:
    """Rank every account: win propensity where a deal is open, else propensity to buy.

    Both propensities and the reasons of each are in the ranked file; priority and ABM tiers
    use the one that applies.
    """
    from abm_ml.modeling.horizon import accounts_with_open_deal
    from abm_ml.modeling.ranking import (
        load_accounts,
        parse_tiers,
        rank_buy_and_win,
        write_ranked,
        write_unscorable,
    )
    from abm_ml.registry.store import configure, load_scorer

    sizes = parse_tiers(tiers)
    cutoff = None
    if spec is not None:
        accounts, deals, as_of, cutoff = _spec_accounts(spec, accounts, opportunities, as_of)
    else:
        if accounts is None:
            raise AbmInputError("give the accounts to rank, or --spec", field="ACCOUNTS")
        deals = read_opportunities(
            opportunities or cfg.data_dir() / "synth" / "opportunities.parquet"
        )
    if not accounts.exists():
        raise AbmInputError("file not found", source=str(accounts))
    configure()
    buy_scorer, buy_version = load_scorer(cfg.buy_model_name(), buy_model)
    win_scorer, win_version = load_scorer(cfg.registered_model_name(), win_model)
    frame = load_accounts(str(accounts), scorer=win_scorer)
    if as_of is None:
        as_of = (
            str(pd.to_datetime(frame["as_of"]).max().date())
            if "as_of" in frame.columns
            else str(pd.Timestamp.now().date())
        )
    result = rank_buy_and_win(
        buy_scorer,
        win_scorer,
        frame,
        accounts_with_open_deal(deals, as_of if cutoff is None else cutoff),
        tiers=sizes,
        as_of=as_of,
        buy_model=(cfg.buy_model_name(), str(buy_version.version)),
        win_model=(cfg.registered_model_name(), str(win_version.version)),
    )
    out = out or cfg.reports_dir() / "rankings" / f"buy-{result.meta['as_of']}.csv"
    write_ranked(result.ranked, out)
    unscorable_path = write_unscorable(
        result.unscorable, out.with_name(out.stem + "-unscorable.csv")
    )
    console.print(_two_propensity_table(result, show))
    console.print(f"Propensity = {result.meta['propensity']}.")
    console.print(f"Ranked {result.meta['ranked']:,} accounts -> {out}")
    if result.meta["unscorable"]:
        console.print(
            f"[yellow]{result.meta['unscorable']:,} scores could not be made[/] -> {unscorable_path}"
        )
    if report:
        from abm_ml.reporting.ranking_report import ranking_report

        console.print(f"Report -> {ranking_report(result, out.with_suffix('.html'))}")


def _spec_accounts(
    spec: Path, accounts: Path | None, opportunities: Path | None, as_of: str | None
) -> tuple[Path, pd.DataFrame, str, pd.Timestamp]:
    """Accounts file, opportunities, ranking date and its exact cut-off from a multi-table spec.

    Without an accounts file the spec's accounts are built as of ``as_of`` (default: the latest
    event) by the same builder as `abm-ml rows` and written beside its rows, so the ranking
    reads them through the models' own reader like any accounts file.
    """
    from abm_ml.features.point_in_time import build_scoring_rows

    if opportunities is not None:
        raise AbmInputError(
            "--spec gives the opportunities: drop --opportunities", field="--opportunities"
        )
    loaded, tables = _spec_tables(spec)
    when = _date(as_of, "--as-of") or tables.latest_event()
    if accounts is None:
        accounts = Path(loaded.tables.out) / f"scoring_rows-{when.date()}.parquet"  # type: ignore[union-attr]
        accounts.parent.mkdir(parents=True, exist_ok=True)
        build_scoring_rows(tables, when).to_parquet(accounts, index=False)
    deals = tables.opportunities[[ACCOUNT_ID, CREATED_AT, CLOSED_AT, OUTCOME]].copy()
    deals[ACCOUNT_ID] = deals[ACCOUNT_ID].astype(str)
    # The open-deal rule must cut where the scoring rows did (the latest event is a time of day).
    return accounts, deals, str(when.date()) if as_of is None else as_of, when


def _two_propensity_table(result, show: int) -> Table:
    """The top ``show`` accounts with both propensities and which one ranks them."""
    horizon = result.meta.get("horizon_days")
    table = Table(
        title=f"Top accounts as of {result.meta['as_of']}: win = open deal won, "
        f"buy = deal created within {horizon} days and won"
    )
    for header, right in (
        ("#", True),
        ("account", False),
        ("tier", False),
        ("ranked by", False),
        ("win", True),
        ("buy", True),
        ("top reason", False),
    ):
        table.add_column(
            header, justify="right" if right else "left", no_wrap=header != "top reason"
        )

    def pct(value: object) -> str:
        return "-" if pd.isna(value) else f"{float(value):.0%}"

    for _, row in result.ranked.head(show).iterrows():
        reason = str(row.get("top_reasons") or "").split("; ")[0].removeprefix("+ ")
        table.add_row(
            str(row["rank"]),
            str(row["account_id"]),
            str(row.get("abm_tier", "")),
            str(row["propensity_used"]),
            pct(row.get("win_propensity")),
            pct(row.get("buy_propensity")),
            reason,
        )
    return table
