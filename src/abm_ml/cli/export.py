"""CRM write-back: ``abm-ml export --crm salesforce|hubspot`` writes the CRM's upsert file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from abm_ml import config as cfg
from abm_ml.cli.app import app, console
from abm_ml.errors import AbmInputError


def _renames(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        logical, sep, name = pair.partition("=")
        if not sep:
            raise AbmInputError(
                f"--field takes FIELD=CRM_NAME (e.g. score=My_Score__c), got {pair!r}",
                field="--field",
            )
        out[logical.strip()] = name.strip()
    return out


@app.command()
def export(
    crm: Annotated[
        str,
        typer.Option("--crm", help="The CRM whose import file to write: salesforce or hubspot."),
    ],
    out: Annotated[
        Path | None,
        typer.Option(help="The file to write; default reports/writeback/CRM-AS_OF.csv."),
    ] = None,
    changed_only: Annotated[
        bool,
        typer.Option(
            "--changed-only",
            help="Only accounts whose score or tier changed since the last export to this CRM.",
        ),
    ] = False,
    id_field: Annotated[
        str | None,
        typer.Option(
            help="Header of the id column: Salesforce 'Id' (default) or an external id field; "
            "HubSpot 'Record ID' (default) or 'Company Domain Name'."
        ),
    ] = None,
    field: Annotated[
        list[str] | None,
        typer.Option(
            help="Rename a field: FIELD=CRM_NAME, FIELD one of score, tier, reasons, "
            "days_to_close, score_change (repeat for several)."
        ),
    ] = None,
    max_reasons: Annotated[
        int | None,
        typer.Option(
            help="Most characters of the reasons field (default: the CRM's text limit, "
            "Salesforce 255, HubSpot 65536)."
        ),
    ] = None,
    history_url: Annotated[
        str | None,
        typer.Option(help="SQLAlchemy URL of the score history (default SQLite under reports/)."),
    ] = None,
) -> None:
    """Write the latest ranking as the file the CRM's import takes (upsert by record id).

    See docs/crm-writeback.md for the columns, the limits and how to import the file.
    """
    from abm_ml.reporting.writeback import crm_format, export_writeback, latest_ranking

    fmt = crm_format(crm, id_field=id_field, renames=_renames(field), max_reasons=max_reasons)
    url = history_url or cfg.history_url()
    if out is None:
        _, as_of, _ = latest_ranking(url)
        out = cfg.reports_dir() / "writeback" / f"{fmt.crm}-{as_of}.csv"
    result = export_writeback(fmt, url, out, changed_only=changed_only)
    skipped = f" ({result.unchanged:,} unchanged left out)" if changed_only else ""
    console.print(
        f"Wrote {result.written:,} accounts of the ranking as of {result.as_of} "
        f"(model v{result.model_version}) for {fmt.crm}{skipped} -> {result.path}"
    )
