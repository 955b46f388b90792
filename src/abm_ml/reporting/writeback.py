"""CRM write-back: the latest ranking as the upsert file Salesforce or HubSpot imports.

The file has one row per account of the latest run in the score history: the CRM's record id
(or an external id / domain the user names) and the ABM fields. Field names and the text limit
of the reasons are configurable; defaults are documented in ``docs/crm-writeback.md``.

``changed_only`` keeps the accounts whose score or ABM tier differs from what the last export
to the same CRM wrote (new accounts included), to spare the CRM's API limits. What each
export wrote is kept in the ``abm_crm_exports`` table next to the history.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from abm_ml.errors import AbmInputError
from abm_ml.reporting.history import read_engine, safe_url

EXPORTS_TABLE = "abm_crm_exports"
LOGICAL_FIELDS = ("score", "tier", "reasons", "days_to_close", "score_change")
"""What the file writes per account, before the CRM's names are applied."""
ELLIPSIS = "…"
STATE_CHUNK = 500
"""Ids per DELETE ... IN (...) statement when the export state is updated."""


@dataclass(frozen=True)
class CrmFormat:
    """One CRM's import file: its id column, field names and text limits.

    Attributes:
        crm: ``salesforce`` or ``hubspot``.
        id_header: The header of the id column (``Id`` or an external id field for
            Salesforce; ``Record ID`` or ``Company Domain Name`` for HubSpot).
        fields: Logical field (:data:`LOGICAL_FIELDS`) to the CRM's field name.
        limits: Logical field to the most characters the CRM field holds.
    """

    crm: str
    id_header: str
    fields: Mapping[str, str]
    limits: Mapping[str, int] = field(default_factory=dict)


SALESFORCE = CrmFormat(
    crm="salesforce",
    id_header="Id",
    fields={
        "score": "ABM_Score__c",
        "tier": "ABM_Tier__c",
        "reasons": "ABM_Reasons__c",
        "days_to_close": "ABM_Days_To_Close__c",
        "score_change": "ABM_Score_Change__c",
    },
    # Text(255) for the tier, Text Area(255) for the reasons: Salesforce's defaults.
    limits={"tier": 255, "reasons": 255},
)
HUBSPOT = CrmFormat(
    crm="hubspot",
    id_header="Record ID",
    fields={
        "score": "abm_score",
        "tier": "abm_tier",
        "reasons": "abm_reasons",
        "days_to_close": "abm_days_to_close",
        "score_change": "abm_score_change",
    },
    # HubSpot's limit for a string property value.
    limits={"tier": 65_536, "reasons": 65_536},
)
FORMATS = {f.crm: f for f in (SALESFORCE, HUBSPOT)}
SALESFORCE_ID = re.compile(r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$")
HUBSPOT_ID = re.compile(r"^[0-9]{1,20}$")
DOMAIN = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,63}$")


def crm_format(
    crm: str,
    *,
    id_field: str | None = None,
    renames: Mapping[str, str] | None = None,
    max_reasons: int | None = None,
) -> CrmFormat:
    """The format of ``crm`` with the user's id field, field names and reasons limit.

    Raises:
        AbmInputError: an unknown CRM, logical field, empty name or a limit below 1.
    """
    base = FORMATS.get(crm.lower().strip())
    if base is None:
        raise AbmInputError(f"unknown CRM {crm!r}; use one of {', '.join(FORMATS)}", field="--crm")
    fields = dict(base.fields)
    for logical, name in (renames or {}).items():
        if logical not in fields:
            raise AbmInputError(
                f"unknown field {logical!r}; the fields are {', '.join(LOGICAL_FIELDS)}",
                field="--field",
            )
        if not name.strip():
            raise AbmInputError(f"field {logical!r} needs a CRM field name", field="--field")
        fields[logical] = name.strip()
    limits = dict(base.limits)
    if max_reasons is not None:
        if max_reasons < 1:
            raise AbmInputError("the reasons limit must be at least 1", field="--max-reasons")
        limits["reasons"] = max_reasons
    id_header = (id_field or base.id_header).strip()
    if not id_header:
        raise AbmInputError("the id field needs a name", field="--id-field")
    return CrmFormat(base.crm, id_header, fields, limits)


def cut(text: str | None, limit: int) -> str:
    """``text`` within ``limit`` characters: whole reasons kept, else cut with an ellipsis."""
    if not text:
        return ""
    if len(text) <= limit:
        return text
    parts = text.split("; ")
    kept = ""
    for part in parts:
        candidate = f"{kept}; {part}" if kept else part
        if len(candidate) > limit:
            break
        kept = candidate
    if kept:
        return kept
    return text[: max(limit - 1, 0)] + ELLIPSIS if limit > 1 else text[:limit]


def _check_ids(ids: pd.Series, fmt: CrmFormat) -> None:
    """Ids that the chosen id column cannot hold are refused, naming the first one."""
    if fmt.crm == "salesforce" and fmt.id_header == "Id":
        pattern, what = SALESFORCE_ID, "a 15- or 18-character Salesforce record id"
        hint = "name the external id field holding your account ids with --id-field"
    elif fmt.crm == "hubspot" and fmt.id_header == "Record ID":
        pattern, what = HUBSPOT_ID, "a numeric HubSpot company record id"
        hint = "use --id-field 'Company Domain Name' when the ids are domains"
    elif fmt.crm == "hubspot" and fmt.id_header.lower() == "company domain name":
        pattern, what = DOMAIN, "a domain name"
        hint = "use the company record ids (the default id column)"
    else:
        return
    bad = ids[~ids.str.fullmatch(pattern)]
    if len(bad):
        raise AbmInputError(
            f"{len(bad):,} account ids are not {what} (first: {bad.iloc[0]!r}); {hint}",
            field=fmt.id_header,
        )


def _exports_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        EXPORTS_TABLE,
        metadata,
        sa.Column("crm", sa.String(32), primary_key=True),
        sa.Column("account_id", sa.String(255), primary_key=True),
        sa.Column("score", sa.Integer),
        sa.Column("abm_tier", sa.String(16)),
        sa.Column("exported_at", sa.String(32), nullable=False),
    )


@dataclass
class ExportResult:
    """What an export wrote."""

    path: Path
    written: int
    unchanged: int
    as_of: str
    model_version: str


def latest_ranking(url: str) -> tuple[pd.DataFrame, str, str]:
    """The latest run's accounts (rank order) with details and score change since the run before.

    Returns:
        The accounts, the run's as-of date and model version.

    Raises:
        AbmInputError: no history at ``url`` or no run in it.
    """
    from abm_ml.web.queries import CSV_COLUMNS, AccountQuery, HistoryReader

    engine = read_engine(url)
    try:
        reader = HistoryReader(engine)
        with engine.connect() as connection:
            if not reader.has_history(connection):
                raise AbmInputError("no ranking run has been recorded here", source=safe_url(url))
            runs = reader.runs(connection, limit=2)
            if not runs:
                raise AbmInputError("no ranking run has been recorded here", source=safe_url(url))
            latest, previous = runs[0], (runs[1] if len(runs) > 1 else None)
            chunks = list(reader.accounts_csv_rows(connection, latest, previous, AccountQuery()))
    finally:
        engine.dispose()
    rows = [row for chunk in chunks for row in chunk]
    return (
        pd.DataFrame.from_records(rows, columns=list(CSV_COLUMNS)),
        latest.as_of,
        latest.model_version,
    )


def export_writeback(
    fmt: CrmFormat,
    history_url: str,
    out: Path,
    *,
    changed_only: bool = False,
    now: str | None = None,
) -> ExportResult:
    """Write the upsert file of the latest ranking for ``fmt``'s CRM and record what it wrote.

    Args:
        fmt: The CRM format (:func:`crm_format`).
        history_url: SQLAlchemy URL of the score history.
        out: The CSV file to write.
        changed_only: Only accounts whose score or tier differs from the last export to this
            CRM (or that it never received).
        now: Timestamp recorded with the export (default: now, UTC).

    Raises:
        AbmInputError: no ranking, ids the id column cannot hold, an unwritable file.
    """
    ranking, as_of, version = latest_ranking(history_url)
    ids = ranking["account_id"].astype(str)
    _check_ids(ids, fmt)
    engine = read_engine(history_url)
    metadata = sa.MetaData()
    exports = _exports_table(metadata)
    try:
        metadata.create_all(engine, checkfirst=True)
        with engine.connect() as connection:
            last = pd.DataFrame(
                connection.execute(
                    sa.select(exports.c.account_id, exports.c.score, exports.c.abm_tier).where(
                        exports.c.crm == fmt.crm
                    )
                ).all(),
                columns=["account_id", "score", "abm_tier"],
            )
        keep = [True] * len(ranking)
        if changed_only:
            written = {
                str(i): (None if pd.isna(sc) else int(sc), str(t))
                for i, sc, t in zip(last["account_id"], last["score"], last["abm_tier"])
            }
            keep = [
                written.get(i) != (int(sc), str(t))
                for i, sc, t in zip(ids, ranking["score"], ranking["abm_tier"])
            ]
        chosen = ranking[keep]
        _write_file(chosen, fmt, out)
        _record_state(engine, exports, fmt.crm, chosen, full=not changed_only, now=now)
    finally:
        engine.dispose()
    return ExportResult(out, len(chosen), len(ranking) - len(chosen), as_of, version)


def _write_file(ranking: pd.DataFrame, fmt: CrmFormat, out: Path) -> None:
    """The CSV the CRM's importer takes: UTF-8, comma-separated, one header row."""

    def whole(values: pd.Series) -> list[str]:
        numbers = pd.to_numeric(values, errors="coerce")
        return ["" if pd.isna(v) else str(round(float(v))) for v in numbers]

    def text(values: pd.Series, logical: str) -> list[str]:
        limit = fmt.limits.get(logical)
        return [
            cut(None if pd.isna(v) else str(v), limit) if limit else ("" if pd.isna(v) else str(v))
            for v in values
        ]

    columns = {
        fmt.id_header: ranking["account_id"].astype(str).tolist(),
        fmt.fields["score"]: whole(ranking["score"]),
        fmt.fields["tier"]: text(ranking["abm_tier"], "tier"),
        fmt.fields["reasons"]: text(ranking["top_reasons"], "reasons"),
        fmt.fields["days_to_close"]: whole(ranking["days_to_close_p50"]),
        fmt.fields["score_change"]: whole(ranking["score_change"]),
    }
    if len(set(columns)) != len(columns):
        raise AbmInputError("two columns of the file would have the same name", field="--field")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows(zip(*columns.values()))
    except OSError as error:
        raise AbmInputError(f"cannot write the file ({error.strerror})", source=str(out)) from None


def _record_state(
    engine: sa.Engine,
    exports: sa.Table,
    crm: str,
    chosen: pd.DataFrame,
    *,
    full: bool,
    now: str | None,
) -> None:
    """Remember each written account's score and tier (a full export replaces the state)."""
    stamp = now or dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    ids = chosen["account_id"].astype(str).tolist()
    rows = [
        {"crm": crm, "account_id": i, "score": int(s), "abm_tier": str(t), "exported_at": stamp}
        for i, s, t in zip(ids, chosen["score"], chosen["abm_tier"])
    ]
    with engine.begin() as connection:
        if full:
            connection.execute(exports.delete().where(exports.c.crm == crm))
        else:
            for start in range(0, len(ids), STATE_CHUNK):
                connection.execute(
                    exports.delete().where(
                        exports.c.crm == crm,
                        exports.c.account_id.in_(ids[start : start + STATE_CHUNK]),
                    )
                )
        if rows:
            connection.execute(exports.insert(), rows)
