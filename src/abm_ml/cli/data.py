"""Data commands: validate a CRM export against its spec, synthesize an ABM world."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from abm_ml import config as cfg
from abm_ml.cli.app import SpecArg, app, console


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
    table.add_row("identical rows", f"{summary.get('identical_rows', 0):,}")
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
    leak_check: Annotated[
        bool,
        typer.Option(
            "--leak-check",
            help="Train a quick model with and without each column the leakage guard flags "
            "and print the ROC AUC jump each one causes (seconds to a minute).",
        ),
    ] = False,
) -> None:
    """Check a CRM export against its spec: every row accepted or rejected with a reason.

    Also runs the leakage guard on the closed deals: it names the columns it would refuse
    and warns, with the figure, on suspicious ones (see docs/spec.md, `leakage:`).
    """
    from abm_ml.data.leakage import check_leakage
    from abm_ml.data.spec import load_spec
    from abm_ml.data.validate import load_dataset
    from abm_ml.modeling.ranking import neutralise_formulas

    dataset = load_dataset(load_spec(spec))
    rejects_path = rejects or cfg.reports_dir() / dataset.spec.name / "rejects.csv"
    rejects_path.parent.mkdir(parents=True, exist_ok=True)
    # Opened in Excel like the rankings: CRM values must not run there as formulas.
    neutralise_formulas(dataset.rejects).to_csv(rejects_path, index=False)
    findings = check_leakage(dataset.frame, dataset.features, dataset.spec)
    summary = dataset.summary.to_dict() | {
        "rejects_file": str(rejects_path),
        "leakage": [f.to_dict() | {"decision": f.decision} for f in findings],
    }
    impacts = _leak_impacts(dataset, quiet=as_json) if leak_check else None
    if impacts is not None:
        summary["leak_check"] = [impact.to_dict() for impact in impacts]
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
        return
    _print_summary(summary, rejects_path)
    for finding in findings:
        colour = "red" if finding.refuses else "yellow"
        console.print(f"[{colour}]leakage guard[/]: {finding.message()}")
    if impacts is not None:
        if not impacts:
            console.print("leak check: no flagged column to measure.")
        for impact in impacts:
            console.print(f"[bold]leak check[/]: {impact.message()}")


def _leak_impacts(dataset, *, quiet: bool) -> list:
    """The quick-model ROC AUC jump of each flagged column, on the dataset's own split."""
    from abm_ml.modeling.leak_check import leak_check

    if quiet:  # --json: nothing but the JSON on stdout
        return leak_check(dataset)
    with console.status("Leak check: training quick models with and without flagged columns..."):
        return leak_check(dataset)


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
