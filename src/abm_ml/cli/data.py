"""Data commands: validate a CRM export against its spec, build rows from CRM objects, synthesize an ABM world."""

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
def rows(
    spec: SpecArg,
    as_of: Annotated[
        str | None,
        typer.Option(help="Date of the scoring rows (default: the spec's, else the latest event)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Build training and scoring rows from the CRM objects of a multi-table spec (`tables:`).

    Reads every table (accounts, contacts, opportunities, contact roles, activities, intent),
    rejects each row it cannot use with its table, line and reason, and writes into the spec's
    `tables.out`: training_rows.parquet (each opportunity as of its creation, what `validate`
    and `train` then read), scoring_rows.parquet (each account as of --as-of, for `rank`) and
    table_rejects.csv. See docs/crm-objects.md.
    """
    from abm_ml.data.spec import load_spec
    from abm_ml.features.build import build_rows, write_rows

    loaded = load_spec(spec)
    started = time.perf_counter()
    with console.status("Reading CRM objects and building point-in-time rows..."):
        built = build_rows(loaded, as_of)
        paths = write_rows(built, loaded.tables.out)  # type: ignore[union-attr]
    summary = {
        "dataset": loaded.name,
        "as_of": built.as_of.isoformat(),
        "tables": {k: v for k, v in built.tables.summary.items() if k != "notes"},
        "notes": built.tables.summary["notes"],
        "training_rows": len(built.training),
        "scoring_rows": len(built.scoring),
        "files": {k: str(v) for k, v in paths.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    table = Table(title=f"Tables of {loaded.name}", show_header=True)
    for col in ("table", "file", "read", "used", "rejected", "top reasons"):
        table.add_column(col)
    for name, part in summary["tables"].items():
        reasons = sorted(part["rejected_by_reason"].items(), key=lambda kv: -kv[1])[:3]
        table.add_row(
            name,
            Path(part["file"]).name,
            f"{part['read']:,}",
            f"{part['used']:,}",
            f"{part['rejected']:,}",
            "; ".join(f"{r} ({n:,})" for r, n in reasons),
        )
    console.print(table)
    for note in summary["notes"]:
        console.print(f"note: {note}")
    console.print(
        f"{summary['training_rows']:,} opportunity rows -> {paths['training']}\n"
        f"{summary['scoring_rows']:,} account rows as of {built.as_of.date()} -> {paths['scoring']}\n"
        f"rejected rows of every table -> {paths['rejects']} ({summary['seconds']} s)"
    )


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
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="rows: the world's tables plus training and scoring rows (synthetic-abm.yaml); "
            "salesforce or hubspot: the objects as that CRM exports them, CSV with its field "
            "names; parquet: the tables with abm-ml's names. The last three go to "
            "OUT/<format> (OUT/tables for parquet), read by training/specs/synthetic-<format>.yaml "
            "through `abm-ml rows`.",
        ),
    ] = "rows",
) -> None:
    """Write a seeded synthetic ABM world: accounts, buying committees, engagement, intent, deals.

    With --format rows (the default) it writes the raw tables, training_rows.parquet (each
    opportunity as of its creation) and scoring_rows.parquet (each account as of --as-of), used
    by training/specs/synthetic-abm.yaml. With salesforce, hubspot or parquet it writes the
    world as CRM object exports instead (see docs/crm-objects.md).
    """
    from abm_ml.errors import AbmInputError
    from abm_ml.features.point_in_time import build_scoring_rows, build_training_rows
    from abm_ml.synthetic.export import EXPORT_FORMATS, export_world
    from abm_ml.synthetic.generate import generate_world

    if format not in ("rows", *EXPORT_FORMATS):
        raise AbmInputError(
            f"unknown format {format!r}: one of rows, {', '.join(EXPORT_FORMATS)}", field="--format"
        )
    out = out or cfg.data_dir() / "synth"
    started = time.perf_counter()
    with console.status(f"Synthesizing {accounts:,} accounts..."):
        world = generate_world(n_accounts=accounts, seed=seed)
    if format != "rows":
        folder = out / ("tables" if format == "parquet" else format)
        with console.status(f"Writing {format} exports..."):
            export_world(world, folder, format)  # type: ignore[arg-type]
        console.print(
            f"Synthetic world as {format} exports in [bold]{folder}[/]: "
            f"{', '.join(sorted(p.name for p in folder.iterdir() if p.is_file()))} "
            f"({time.perf_counter() - started:.1f} s). Next: abm-ml rows "
            f"training/specs/synthetic-{'tables' if format == 'parquet' else format}.yaml"
        )
        return
    with console.status("Saving the world..."):
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
