"""ROI commands for marketing ops: what campaigns returned, and pilots with a control group."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from abm_ml import config as cfg
from abm_ml.cli.app import app, console
from abm_ml.errors import AbmInputError
from abm_ml.reporting.formatting import fmt_int
from abm_ml.roi.attribution import MODELS

FileOpt = Annotated[Path, typer.Option(help="CSV or Parquet file.", show_default=False)]
HistoryOpt = Annotated[
    str | None,
    typer.Option(help="SQLAlchemy URL of the score history (default SQLite under reports/)."),
]
OutOpt = Annotated[
    Path | None, typer.Option(help="Folder for the HTML and JSON reports (default reports/roi/).")
]


def roi_table(report) -> Table:
    """The campaigns' reach, cost per new logo and return on spend under each view."""
    from abm_ml.roi.pages import fmt_times
    from abm_ml.roi.report import roi_table as wide

    table = Table(
        title=f"Campaign ROI, touches {report.period['start']} to {report.period['end']}",
        caption="ROS = return on spend, (credited won revenue - cost) / cost, per attribution view",
    )
    table.add_column("campaign", min_width=8)
    table.add_column("channel")
    for name in (
        "cost",
        "reached",
        "engaged",
        "opps\ntouched",
        "cost per\nnew logo",
        "ROS\nfirst",
        "ROS\nlast",
        "ROS\neven",
    ):
        table.add_column(name, justify="right")
    for row in wide(report).itertuples(index=False):
        table.add_row(
            str(row.campaign_id),
            str(row.channel),
            fmt_int(row.cost),
            fmt_int(row.accounts_reached),
            fmt_int(row.engaged_accounts),
            fmt_int(row.opportunities_touched),
            fmt_int(row.cost_per_new_logo),
            *(fmt_times(getattr(row, f"ros_{view}")) for view in MODELS),
        )
    return table


def print_roi(report) -> None:
    """The ROI table, the velocity comparison and the caveats, on the console."""
    from abm_ml.roi.pages import fmt_metric

    console.print(roi_table(report))
    v = report.velocity
    console.print(
        f"Won deals touched: median {fmt_metric(v['median_days_touched'], 'days')} days to close "
        f"({v['won_deals_touched']:,} deals); untouched: {fmt_metric(v['median_days_untouched'], 'days')} "
        f"({v['won_deals_untouched']:,}); difference {fmt_metric(v['difference_days'], 'days', signed=True)} days."
    )
    for note in report.notes:
        console.print(f"[dim]{note}[/]")


def print_pilot(report) -> None:
    """The pilot report's table and verdict, on the console."""
    from abm_ml.roi.pages import VERDICT_LABELS, pilot_rows

    balance = report.pilot.balance()
    table = Table(
        title=f"Pilot {report.pilot.pilot_id}: {balance['pilot']['accounts']} pilot vs "
        f"{balance['control']['accounts']} control accounts, {report.period['start']} to {report.period['end']}"
    )
    table.add_column("outcome")
    table.add_column("pilot", justify="right")
    table.add_column("control", justify="right")
    table.add_column("difference [95 % interval]", justify="right")
    for row in pilot_rows(report):
        table.add_row(row["label"], row["pilot"], row["control"], row["difference"])
    console.print(table)
    label, banner = VERDICT_LABELS[report.verdict]
    colour = {"good": "green", "danger": "red"}.get(banner, "yellow")
    console.print(f"[bold {colour}]{label}.[/] {report.message}")


def _write_rejects(rejects: pd.DataFrame, path: Path) -> None:
    if len(rejects):
        path.parent.mkdir(parents=True, exist_ok=True)
        rejects.to_csv(path, index=False)
        console.print(f"{len(rejects):,} input rows rejected, with file, line and reason -> {path}")


@app.command()
def roi(
    campaigns: Annotated[
        Path,
        typer.Option(help="Campaigns: campaign_id, name, channel, cost, start, end (CSV/Parquet)."),
    ],
    touches: Annotated[
        Path | None,
        typer.Option(
            help="Campaign members: campaign_id, account_id, touched_at (optional responded)."
        ),
    ] = None,
    opportunities: Annotated[
        Path | None,
        typer.Option(
            help="Opportunities: opportunity_id, account_id, created_at, closed_at, outcome, amount."
        ),
    ] = None,
    spec: Annotated[
        Path | None,
        typer.Option(
            "--spec",
            help="A multi-table CRM spec (`tables:`, docs/crm-objects.md) instead of --touches, "
            "--opportunities, --accounts and --activities: touches are its activities with a "
            "campaign id (Salesforce CampaignMember), the other activities define engagement.",
        ),
    ] = None,
    accounts: Annotated[
        Path | None,
        typer.Option(
            help="Accounts: account_id (optional is_target); orphans of other tables are rejected."
        ),
    ] = None,
    activities: Annotated[
        Path | None,
        typer.Option(
            help="CRM activities: account_id, occurred_at; an activity within 90 days after a "
            "touch engages the account (default: the touches' responded column)."
        ),
    ] = None,
    content: Annotated[
        Path | None,
        typer.Option(help="Content items: campaign_id, content_id, cost (added to the campaign)."),
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="First day of touches counted (default: earliest touch).")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Last day of touches counted (default: latest touch).")
    ] = None,
    window_days: Annotated[
        int,
        typer.Option(
            min=0, help="Days after a touch within which a new opportunity counts as touched."
        ),
    ] = 90,
    out: OutOpt = None,
) -> None:
    """Campaign ROI: reach, engagement, influenced pipeline and revenue, cost per new logo.

    Credit is shown under three labelled views (first touch, last touch, even split); none of
    them is causal. Writes roi.html and roi.json (and roi-rejects.csv when rows were rejected).
    """
    from abm_ml.roi.pages import write_roi_html
    from abm_ml.roi.report import compute_roi, write_json
    from abm_ml.roi.tables import load_tables

    dates = {}
    for name, value in (("--start", start), ("--end", end)):
        try:
            dates[name] = pd.Timestamp(value) if value else None
        except ValueError:
            raise AbmInputError(f"not a date: {value!r}", field=name) from None
    if spec is not None:
        given = [
            f"--{name}"
            for name, value in (
                ("touches", touches),
                ("opportunities", opportunities),
                ("accounts", accounts),
                ("activities", activities),
            )
            if value is not None
        ]
        if given:
            raise AbmInputError(
                f"--spec gives the CRM tables: drop {', '.join(given)}", field=given[0]
            )
        from abm_ml.data.spec import load_spec
        from abm_ml.roi.tables import load_crm_tables

        tables = load_crm_tables(campaigns, load_spec(spec), content)
    elif touches is None or opportunities is None:
        raise AbmInputError(
            "give --touches and --opportunities, or a CRM tables spec with --spec",
            field="--touches" if touches is None else "--opportunities",
        )
    else:
        tables = load_tables(campaigns, touches, opportunities, accounts, content, activities)
    report = compute_roi(
        tables, start=dates["--start"], end=dates["--end"], window_days=window_days
    )
    folder = out or cfg.reports_dir() / "roi"
    print_roi(report)
    _write_rejects(tables.rejects, folder / "roi-rejects.csv")
    console.print(f"ROI report -> {write_roi_html(report, folder / 'roi.html')}")
    console.print(f"ROI data   -> {write_json(report, folder / 'roi.json')}")


pilot_app = typer.Typer(
    help="A pilot with a control group: `pilot --accounts N` starts one, `pilot report` measures it.",
    no_args_is_help=False,
    invoke_without_command=True,
)
app.add_typer(pilot_app, name="pilot", rich_help_panel=None)


@pilot_app.callback()
def pilot(
    ctx: typer.Context,
    accounts: Annotated[
        int | None,
        typer.Option(
            min=1, help="Accounts in the pilot arm; the control arm gets as many, matched on score."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the randomisation (recorded).")] = 7,
    stratum_size: Annotated[
        int,
        typer.Option(help="Neighbouring ranks per score stratum (even; 2 = matched pairs)."),
    ] = 2,
    name: Annotated[
        str | None, typer.Option(help="Name of the pilot (default pilot-START-SEED).")
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="First day the pilot accounts are worked (default today).")
    ] = None,
    model_version: Annotated[
        str | None, typer.Option(help="Take the latest ranking of this model version.")
    ] = None,
    history_url: HistoryOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Where to write the assignment (CSV); default reports/roi/pilots/."),
    ] = None,
) -> None:
    """Start a pilot: N accounts from the current ranking, and a matched control group.

    The best 2N accounts of the latest ranking in the score history are cut into score strata
    of neighbouring ranks and randomised within each (seeded). The assignment is stored in the
    history database, so `abm-ml pilot report` can compare the arms later.
    """
    if ctx.invoked_subcommand is not None:
        return
    if accounts is None:
        raise AbmInputError(
            "give --accounts N to start a pilot, or `abm-ml pilot report` to measure one",
            field="--accounts",
        )
    from abm_ml.roi.pilot import latest_ranking, record_pilot, select_pilot

    url = history_url or cfg.history_url()
    chosen = select_pilot(
        latest_ranking(url, model_version),
        accounts,
        seed=seed,
        stratum_size=stratum_size,
        pilot_id=name,
        started_on=start,
    )
    record_pilot(chosen, url, create_sqlite_folder=history_url is None)
    path = out or cfg.reports_dir() / "roi" / "pilots" / f"{chosen.pilot_id}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    chosen.assignment.to_csv(path, index=False)
    balance = chosen.balance()
    console.print(
        f"Pilot [bold]{chosen.pilot_id}[/] from model version {chosen.model_version}'s ranking of "
        f"{chosen.ranking_as_of}: {balance['pilot']['accounts']} pilot accounts "
        f"(mean score {balance['pilot']['mean_score']:.1f}) and {balance['control']['accounts']} "
        f"control accounts (mean score {balance['control']['mean_score']:.1f}), starting {chosen.started_on}."
    )
    console.print(
        f"Assignment -> {path} (work only the 'pilot' arm; leave 'control' to usual marketing)"
    )


@pilot_app.command("report")
def pilot_report_command(
    opportunities: Annotated[
        Path,
        typer.Option(
            help="Opportunities: opportunity_id, account_id, created_at, closed_at, outcome, amount."
        ),
    ],
    touches: Annotated[
        Path | None,
        typer.Option(help="Campaign members with a responded column, to compare engagement."),
    ] = None,
    activities: Annotated[
        Path | None,
        typer.Option(help="CRM activities (account_id, occurred_at): engagement in the period."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Pilot to report (default the latest).")] = None,
    as_of: Annotated[
        str | None, typer.Option(help="End of the period (default: the latest date in the files).")
    ] = None,
    min_lift: Annotated[
        float,
        typer.Option(
            min=0.01, max=1.0, help="Smallest lift in opportunity creation worth detecting."
        ),
    ] = 0.10,
    history_url: HistoryOpt = None,
    out: OutOpt = None,
) -> None:
    """Measure a pilot: pilot vs control on engagement, opportunities, wins, velocity, revenue.

    Every difference comes with a 95 % bootstrap interval. With too few accounts for the
    difference observed, no conclusion is drawn and the accounts needed are given.
    """
    import json

    from abm_ml.roi.pages import write_pilot_html
    from abm_ml.roi.pilot import load_pilot, pilot_report
    from abm_ml.roi.tables import read_activities, read_opportunities, read_touches

    try:
        end = pd.Timestamp(as_of) if as_of else None
    except ValueError:
        raise AbmInputError(f"not a date: {as_of!r}", field="--as-of") from None
    stored = load_pilot(history_url or cfg.history_url(), name)
    opps, rejects, _ = read_opportunities(opportunities)
    parts = [rejects]
    touch_frame = None
    if touches is not None:
        touch_frame, touch_rejects, _ = read_touches(touches)
        parts.append(touch_rejects)
    activity_frame = None
    if activities is not None:
        activity_frame, activity_rejects, _ = read_activities(activities)
        parts.append(activity_rejects)
    report = pilot_report(stored, opps, touch_frame, activity_frame, as_of=end, min_lift=min_lift)
    print_pilot(report)
    folder = out or cfg.reports_dir() / "roi"
    _write_rejects(pd.concat(parts, ignore_index=True), folder / f"{stored.pilot_id}-rejects.csv")
    html = write_pilot_html(report, folder / f"{stored.pilot_id}.html")
    data = folder / f"{stored.pilot_id}.json"
    data.write_text(json.dumps(report.to_dict(), indent=2, allow_nan=False), encoding="utf-8")
    console.print(f"Pilot report -> {html}")
    console.print(f"Pilot data   -> {data}")


def demo_roi(folder: Path, reports: Path, seed: int = 7, n_accounts: int = 4000) -> None:
    """The demo's ROI step: a planted campaign world, its ROI table and two pilots.

    Campaign A truly lifts opportunity creation, B does nothing and C only reaches accounts
    that would have bought anyway; the pilots (A, then C) show what the control group sees.
    The world's ranking and the pilots go to a history database of their own under
    ``reports``, recreated on each run, so the demo never mixes them with real rankings.
    """
    from abm_ml.reporting.history import record_run
    from abm_ml.roi.pages import fmt_metric, write_pilot_html, write_roi_html
    from abm_ml.roi.pilot import latest_ranking, pilot_report, record_pilot, select_pilot
    from abm_ml.roi.report import compute_roi, write_json
    from abm_ml.roi.tables import load_tables
    from abm_ml.synthetic.campaigns import PLANTED_LIFT, generate_campaign_world, simulate_pilot

    world = generate_campaign_world(n_accounts, seed=seed)
    paths = world.save(folder)
    tables = load_tables(
        paths["campaigns"], paths["touches"], paths["opportunities"], paths["accounts"]
    )
    report = compute_roi(tables, start=world.start, end=world.start + pd.Timedelta(days=364))
    console.print(roi_table(report))
    write_roi_html(report, reports / "roi.html")
    write_json(report, reports / "roi.json")

    database = reports / "campaign-world-history.db"
    database.unlink(missing_ok=True)
    url = f"sqlite:///{database}"
    record_run(
        world.ranking.assign(model_version="campaign-world", as_of=str(world.as_of.date())), url
    )
    started = str((world.as_of + pd.Timedelta(days=1)).date())
    measured = {}
    for campaign in ("A", "C"):
        chosen = select_pilot(
            latest_ranking(url), 300, seed=seed, pilot_id=f"demo-{campaign}", started_on=started
        )
        record_pilot(chosen, url)
        touches, opportunities = simulate_pilot(world, chosen.assignment, campaign, started)
        measured[campaign] = pilot_report(chosen, opportunities, touches, seed=seed)
        write_pilot_html(measured[campaign], reports / f"pilot-demo-{campaign}.html")
    print_pilot(measured["A"])
    last = report.by_campaign[report.by_campaign["model"] == "last_touch"].set_index("campaign_id")
    c_lift = measured["C"].metrics["opened_opportunity"]["difference"]
    console.print(
        f"Campaign C: last touch credits it {last.at['C', 'credited_opportunities']:.0f} "
        f"opportunities (A: {last.at['A', 'credited_opportunities']:.0f}), yet a pilot with C "
        f"measures {fmt_metric(c_lift, 'points', signed=True)}: {measured['C'].verdict.replace('_', ' ')}."
    )
    console.print(
        f"Planted truth: A lifts opportunity creation by {PLANTED_LIFT['A'] * 100:.0f} points, "
        f"B and C by 0; A truly caused {world.truth()['caused_opportunities']['A']} opportunities."
    )
    console.print(
        f"ROI report -> {reports / 'roi.html'}; pilot reports -> {reports}/pilot-demo-*.html"
    )
