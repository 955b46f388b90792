"""CRM object exports read into abm-ml's tables, every row used or rejected with its reason.

A multi-table spec (``tables:``, :class:`~abm_ml.data.spec.TablesSpec`) names one export per
CRM object. :func:`load_tables` reads each through the same readers as a flat export, maps its
columns (a Salesforce or HubSpot preset, overridable key by key, see
:mod:`abm_ml.data.presets`) and values (stage -> won/lost/open, activity type -> channel,
role picklist -> buying-committee role, job title -> role by :mod:`abm_ml.data.roles`), and
returns :class:`CrmTables`: the six canonical tables the point-in-time builder
(:mod:`abm_ml.features.point_in_time`) reads, plus the rejects (table, file, line, reason, key)
and a summary in which, per table, rows read = rows used + rows rejected.

Rows that cannot be placed in time or tied to an account are rejected: orphans (a contact,
deal, activity or intent week of an unknown account; a contact role of an unknown deal or
contact), missing or unparseable timestamps, unmapped stages, types and roles, duplicate ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from abm_ml.data.parsing import parse_dates, parse_numbers
from abm_ml.data.presets import CHANNELS, REQUIRED_COLUMNS, TABLE_COLUMNS, object_preset
from abm_ml.data.readers import ROW_PROBLEM, SOURCE_ROW, RawTable, read_table, require_columns
from abm_ml.data.roles import DEFAULT_ROLE_RULES, ROLES, roles_from_titles
from abm_ml.data.spec import DEFAULT_MISSING_VALUES, SourceSpec, TableSpec, TablesSpec
from abm_ml.errors import AbmInputError
from abm_ml.modeling.feature_info import parse_yes_no
from abm_ml.schema import ACCOUNT_ID, AMOUNT, CLOSED_AT, CREATED_AT, LOST, OPEN, OUTCOME, WON

if TYPE_CHECKING:
    from abm_ml.synthetic.world import World

__all__ = ["CHANNELS", "REJECT_COLUMNS", "CrmTables", "load_tables", "segment_of"]


REJECT_COLUMNS = ("table", "file", "line", "reason", "key")
"""Columns of :attr:`CrmTables.rejects`."""

_TOKENS = frozenset(DEFAULT_MISSING_VALUES)
_ACCOUNT_NUMBERS = (
    "employees",
    "annual_revenue",
    "founded_year",
    "fiscal_year_end_month",
    "crm_data_quality",
)
_ACCOUNT_TEXT = ("industry", "region", "segment", "tech_stack", "owner", "parent_account_id")
_UNUSED = "-"
_ANY = "*"


def segment_of(employees: pd.Series) -> pd.Series:
    """Segment by employee count (smb < 100 <= mid_market < 1000 <= enterprise), missing if unknown."""
    n = pd.to_numeric(employees, errors="coerce").to_numpy(dtype=float)
    seg = np.where(n >= 1000, "enterprise", np.where(n >= 100, "mid_market", "smb")).astype(object)
    seg[np.isnan(n)] = None
    return pd.Series(seg, index=employees.index, dtype=object)


@dataclass(eq=False)
class CrmTables:
    """The canonical tables the point-in-time builder reads.

    Attributes:
        accounts: ``account_id`` plus firmographics (industry, region, segment, tech_stack,
            employees, annual_revenue, uses_competitor, owner_assigned, parent_account_id,
            founded_year, fiscal_year_end_month, crm_data_quality; missing when not exported).
        contacts: ``contact_id``, ``account_id``, ``role`` (one of :data:`ROLES` or missing),
            ``created_at``.
        activities: ``account_id``, ``contact_id`` (may be missing), ``occurred_at``,
            ``channel`` (one of :data:`CHANNELS`), ``pages``, ``seconds_on_site``; and
            ``campaign_id`` when an activity export maps one (campaign members; missing on
            the other exports' rows).
        intent: ``account_id``, ``week_start``, ``topic``, ``score``.
        opportunities: ``opportunity_id``, ``account_id``, ``created_at``, ``closed_at``
            (missing while open), ``outcome``, ``amount``, ``source``.
        contact_roles: ``opportunity_id``, ``contact_id``, ``account_id``, ``role``,
            ``created_at`` (when the role was put on record), or ``None``.
        rejects: Rejected rows: :data:`REJECT_COLUMNS`.
        summary: Per table: file, rows read, used and rejected, rejects by reason; ``notes``.
    """

    accounts: pd.DataFrame
    contacts: pd.DataFrame
    activities: pd.DataFrame
    intent: pd.DataFrame
    opportunities: pd.DataFrame
    contact_roles: pd.DataFrame | None = None
    rejects: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REJECT_COLUMNS))
    summary: dict = field(default_factory=dict)

    @classmethod
    def from_world(cls, world: World) -> CrmTables:
        """The synthetic world's tables as they are (they already have the canonical columns)."""
        return cls(
            accounts=world.accounts,
            contacts=world.contacts,
            activities=world.activities,
            intent=world.intent,
            opportunities=world.opportunities,
        )

    def latest_event(self) -> pd.Timestamp:
        """The latest time any table records: the default date of the scoring rows."""
        times = [
            self.opportunities[CREATED_AT].max(),
            self.opportunities[CLOSED_AT].max(),
            self.activities["occurred_at"].max() if len(self.activities) else pd.NaT,
            self.contacts[CREATED_AT].max() if len(self.contacts) else pd.NaT,
        ]
        return max(pd.Timestamp(t) for t in times if pd.notna(t))


# --------------------------------------------------------------------------------------------
# One table's rows on their way in
# --------------------------------------------------------------------------------------------


class _Rows:
    """One export's rows: its mapped columns as text, and the rejects it has made so far."""

    def __init__(self, kind: str, part: TableSpec, preset: str | None, label: str):
        found = object_preset(preset, kind, part.object)
        self.kind, self.label = kind, label
        self.values = {**(found.values if found else {}), **part.values}
        self.channel = part.channel or (found.channel if found else None)
        self.date_formats = ["ISO", *part.date_formats]
        raw = (
            _read_parquet(part.path)
            if _is_parquet(part)
            else read_table(
                SourceSpec(
                    path=part.path,
                    url=part.url,
                    table=part.table,
                    query=part.query,
                    format=part.format,
                    sep=part.sep,
                    encoding=part.encoding,
                    allow_short_rows=part.allow_short_rows,
                )
            )
        )
        self.file = raw.name
        frame = raw.frame
        mapping = {**(found.columns if found else {}), **part.columns}
        if not found:
            # Without a preset a column named like abm-ml's is taken as it is.
            mapping = {c: c for c in TABLE_COLUMNS[kind] if c in frame.columns} | part.columns
        must = set(REQUIRED_COLUMNS[kind]) | set(part.columns)
        require_columns(
            raw,
            [
                (f"tables.{label}.columns.{role}", col)
                for role, col in mapping.items()
                if role in must
            ]
            + [
                (f"tables.{label}.columns.{role}", role)
                for role in REQUIRED_COLUMNS[kind]
                if role not in mapping
            ],
        )
        # Optional fields a preset names but this export left out are simply absent.
        self.columns = {role: col for role, col in mapping.items() if col in frame.columns}
        self.frame = frame
        self.n_read = len(frame)
        self.keep = np.ones(len(frame), dtype=bool)
        self.rejects: list[pd.DataFrame] = []
        self.reason_counts: dict[str, int] = {}
        self.notes: list[str] = []
        if ROW_PROBLEM in frame.columns:
            self.reject(
                frame[ROW_PROBLEM].notna().to_numpy(),
                "malformed row",
                detail=frame[ROW_PROBLEM],
                sep=": ",
            )

    def has(self, role: str) -> bool:
        return role in self.columns

    def text(self, role: str) -> pd.Series:
        """The mapped column as categorical text: stripped, missing placeholders missing.

        Each distinct value is cleaned once; a million-account export repeats its keys in
        tens of millions of activity rows.
        """
        if role not in self.columns:
            return pd.Series(pd.Categorical([None] * len(self.frame)), index=self.frame.index)
        return _categorical_text(self.frame[self.columns[role]])

    def dates(self, role: str, *, required: bool, end_of_day: bool = True) -> pd.Series:
        """Parsed timestamps; unparseable (and, when ``required``, missing) ones rejected.

        With ``end_of_day`` a column of dates without a time (Salesforce's CloseDate,
        FirstRespondedDate) is read as known at the end of that day, not at midnight: read
        as midnight, a touch of that afternoon would count for a deal created that morning.
        """
        if role not in self.columns:
            if required:
                self.reject(np.ones(len(self.frame), bool), f"no {role} column")
            return pd.Series(pd.NaT, index=self.frame.index, dtype="datetime64[ns]")
        column = self.columns[role]
        raw = self.frame[column]
        if not pd.api.types.is_datetime64_any_dtype(raw):
            raw = _categorical_text(raw)
        parsed, bad = parse_dates(raw, self.date_formats)
        self.reject(bad.to_numpy(), f"unparseable timestamp in {column!r}", detail=raw, sep=": ")
        if required:
            self.reject(parsed.isna().to_numpy(), f"missing timestamp in {column!r}")
        if end_of_day and _date_only(raw):
            parsed = parsed + _END_OF_DAY
        return parsed

    def numbers(self, role: str) -> pd.Series:
        """Parsed numbers; an unparseable one is read as missing and counted in the notes."""
        if role not in self.columns:
            return pd.Series(np.nan, index=self.frame.index, dtype=float)
        raw = self.frame[self.columns[role]]
        if not (pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_bool_dtype(raw)):
            raw = _categorical_text(raw)
        parsed, bad = parse_numbers(raw)
        n_bad = int((bad.to_numpy() & self.keep).sum())
        if n_bad:
            self.notes.append(
                f"{self.label}: {n_bad} unparseable value(s) in {self.columns[role]!r} read as missing"
            )
        return parsed.astype(float)

    def mapped(
        self, raw: pd.Series, what: str, column: str, vocabulary: tuple[str, ...]
    ) -> pd.Categorical:
        """Values through the ``values`` map (``*`` for any other) onto ``vocabulary``.

        Unmapped values and values mapped to ``-`` (not used by abm-ml) are rejected.
        """
        cats = raw.cat.categories
        target = [
            self.values.get(c, self.values.get(_ANY, c if c in vocabulary else None)) for c in cats
        ]
        target_codes = np.array(
            [
                vocabulary.index(t) if t in vocabulary else (-2 if t == _UNUSED else -1)
                for t in target
            ]
            + [-3],
            dtype=np.int32,
        )
        codes = target_codes[raw.cat.codes.to_numpy()]  # a missing value (-1) picks the -3
        self.reject(
            codes == -1, f"{what} not mapped in tables.{self.label}.values", detail=raw, sep=": "
        )
        self.reject(codes == -2, f"{what} not used by abm-ml", detail=raw, sep=": ")
        return pd.Categorical.from_codes(np.where(codes >= 0, codes, -1), categories=vocabulary)

    def reject(
        self,
        mask: np.ndarray,
        reason: str,
        *,
        detail: pd.Series | None = None,
        sep: str = " ",
    ) -> None:
        """Reject the rows in ``mask`` not rejected yet (one reason per row: the first).

        ``reason`` is what the summary counts; ``detail`` (the offending value) is appended
        for the rejected rows only.
        """
        mask = np.asarray(mask, dtype=bool) & self.keep
        n = int(mask.sum())
        if not n:
            return
        text = np.full(n, reason, dtype=object)
        if detail is not None:
            text = text + sep + detail[mask].astype(object).astype(str).to_numpy()
        key_role = TABLE_COLUMNS[self.kind][0]
        key = self.frame[self.columns[key_role]][mask] if key_role in self.columns else None
        self.rejects.append(
            pd.DataFrame(
                {
                    "table": self.label,
                    "file": self.file,
                    "line": self.frame[SOURCE_ROW].to_numpy()[mask],
                    "reason": text,
                    "key": key.astype(object).astype(str).to_numpy() if key is not None else None,
                }
            )
        )
        self.reason_counts[reason] = self.reason_counts.get(reason, 0) + n
        self.keep &= ~mask

    def unique_ids(self, ids: pd.Series, what: str) -> None:
        """Reject rows without an id and rows repeating an earlier row's id."""
        self.reject(ids.isna().to_numpy(), f"missing {what} id")
        codes = np.where(self.keep, ids.cat.codes.to_numpy(), -1)
        dup = pd.Series(codes).duplicated(keep="first").to_numpy() & (codes >= 0)
        if dup.any():
            lines = self.frame[SOURCE_ROW].to_numpy()
            first = pd.Series(lines, index=codes).loc[lambda s: ~s.index.duplicated()]
            first_line = pd.Series(first.reindex(codes).to_numpy(), index=ids.index)
            self.reject(dup, f"duplicate {what} id", detail=first_line, sep=" (first on line ")

    def known(self, codes: np.ndarray, keys: pd.Series, what: str, column: str) -> None:
        """Reject rows whose key is given (``keys``) but not found (``codes`` < 0): orphans."""
        self.reject(
            keys.notna().to_numpy() & (codes < 0),
            f"orphan: {what} not in {what}s",
            detail=keys,
            sep=f" ({column!r}: ",
        )

    def done(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame.loc[self.keep].reset_index(drop=True)

    def report(self) -> dict:
        return {
            "file": self.file,
            "read": self.n_read,
            "used": int(self.keep.sum()),
            "rejected": int(self.n_read - self.keep.sum()),
            "rejected_by_reason": dict(self.reason_counts),
        }


def _is_parquet(part: TableSpec) -> bool:
    return bool(part.path) and (
        part.format == "parquet"
        or (part.format is None and Path(part.path).suffix.lower() in {".parquet", ".pq"})
    )


def _read_parquet(path: str) -> RawTable:
    """A Parquet export with its text columns dictionary-encoded by Arrow.

    Tens of millions of activity rows repeat a million account ids: as categoricals they are
    read without making a Python string per row (the flat reader's path would).
    """
    file = Path(path)
    if file.is_dir():
        raise AbmInputError("is a folder, not a file: give the export file inside it", source=path)
    if not file.is_file():
        raise AbmInputError("file not found", source=path)
    try:
        schema = pq.read_schema(file)
        text = [
            f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
        ]
        # Parquet keeps text dictionary-encoded: read it as such rather than as strings.
        table = pq.read_table(file, read_dictionary=text)
    except Exception as error:  # noqa: BLE001 - pyarrow raises several unrelated types
        raise AbmInputError(f"not a readable Parquet file ({error})", source=path) from None
    if table.num_rows == 0:
        raise AbmInputError("the file has no rows", source=path)
    columns = [
        pc.dictionary_encode(col)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
        else col
        for col in table.columns
    ]
    names = table.column_names
    del table
    # Column by column, freeing Arrow's buffers as they are converted: the peak stays near
    # one copy of the table.
    frame = pa.table(columns, names=names).to_pandas(split_blocks=True, self_destruct=True)
    del columns
    pa.default_memory_pool().release_unused()
    frame[SOURCE_ROW] = np.arange(1, len(frame) + 1)
    return RawTable(frame=frame, name=path, sha256="")


def _clean_value(value: object) -> object:
    """One distinct value as text: stripped, placeholders missing, ``5.0`` ids as ``5``."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return None if text.lower() in _TOKENS else text


def _clean_uniques(uniques: np.ndarray) -> pd.Series:
    """:func:`_clean_value` over distinct values, vectorised when they are all text or integers."""
    kind = pd.api.types.infer_dtype(uniques, skipna=True)
    if kind == "string":
        text = pd.Series(uniques, dtype="string[pyarrow]").str.strip()
        missing = text.isna() | text.str.lower().isin(list(_TOKENS)).fillna(True)
        return text.astype(object).where(~missing.to_numpy(), None)
    if kind == "integer":
        return pd.Series(uniques, dtype=object).astype(str).astype(object)
    return pd.Series([_clean_value(u) for u in uniques], dtype=object)


def _categorical_text(values: pd.Series) -> pd.Series:
    """Clean text as a categorical: each distinct value cleaned once, codes carried over."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes, uniques = values.cat.codes.to_numpy(), values.cat.categories.to_numpy(dtype=object)
    else:
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
    cleaned = _clean_uniques(np.asarray(uniques, dtype=object))
    # Two raw values may clean to the same text (" Acme" and "Acme"): merge their codes.
    merged, categories = pd.factorize(cleaned, use_na_sentinel=True)
    new_codes = np.append(merged, -1).astype(np.int32)[codes]  # -1 (missing) picks the last
    return pd.Series(
        pd.Categorical.from_codes(new_codes, categories=pd.Index(categories, dtype=object)),
        index=values.index,
    )


def _codes(keys: pd.Series, parents: pd.Index) -> np.ndarray:
    """Position of each key in ``parents`` (-1 when missing or unknown), per distinct key."""
    cat_pos = np.append(parents.get_indexer(keys.cat.categories), -1).astype(np.int32)
    return cat_pos[keys.cat.codes.to_numpy()]


_DTYPES: dict[int, tuple[pd.Index, pd.CategoricalDtype]] = {}
"""Key dtypes of the load in progress, by parent index: pandas re-checks a million categories'
uniqueness each time a dtype is made, so each is made once (cleared when the load ends)."""


def _keyed(codes: np.ndarray, parents: pd.Index) -> pd.Categorical:
    """A key column stored as codes over the parent table's keys (as the synthetic world does)."""
    cached = _DTYPES.get(id(parents))
    if cached is None or cached[0] is not parents:
        cached = _DTYPES[id(parents)] = (parents, pd.CategoricalDtype(parents))
    return pd.Categorical.from_codes(codes, dtype=cached[1])


# --------------------------------------------------------------------------------------------
# The tables
# --------------------------------------------------------------------------------------------


def _accounts(rows: _Rows) -> pd.DataFrame:
    ids = rows.text("account_id")
    rows.unique_ids(ids, "account")
    out = pd.DataFrame({ACCOUNT_ID: ids.astype(object)})
    for col in _ACCOUNT_TEXT:
        out[col] = rows.text(col).astype(object)
    for col in _ACCOUNT_NUMBERS:
        out[col] = rows.numbers(col)
    if not rows.has("segment"):
        out["segment"] = segment_of(out["employees"])
    out["uses_competitor"] = (
        parse_yes_no(rows.text("uses_competitor").astype(object)) == 1.0
        if rows.has("uses_competitor")
        else pd.Series(None, index=out.index, dtype=object)
    )
    out["owner_assigned"] = out["owner"].notna() if rows.has("owner") else None
    return rows.done(out)


def _account_codes(rows: _Rows, accounts: pd.Index, what: str) -> np.ndarray:
    """Each row's account as a position in ``accounts``; rows without one or orphans rejected."""
    account = rows.text("account_id")
    rows.reject(account.isna().to_numpy(), f"{what} without an account")
    codes = _codes(account, accounts)
    rows.known(codes, account, "account", rows.columns.get("account_id", ""))
    return codes


def _contacts(rows: _Rows, accounts: pd.Index, rules) -> pd.DataFrame:
    ids = rows.text("contact_id")
    rows.unique_ids(ids, "contact")
    account = _account_codes(rows, accounts, "contact")
    created = rows.dates("created_at", required=True)
    role = pd.Series(None, index=ids.index, dtype=object)
    if rows.has("role"):
        raw = rows.text("role")
        mapped = [rows.values.get(v, v if v in ROLES else None) for v in raw.cat.categories]
        role = pd.Series(
            np.append(np.array(mapped, dtype=object), None)[raw.cat.codes.to_numpy()],
            index=raw.index,
            dtype=object,
        )
        raw = raw.astype(object)
        unmapped = raw.notna() & role.isna() & pd.Series(rows.keep, index=raw.index)
        if unmapped.any():
            rows.notes.append(
                f"{rows.label}: {int(unmapped.sum())} role value(s) not mapped "
                f"({', '.join(sorted(raw[unmapped].unique())[:5])}); their titles decide"
            )
        role = role.where(role != _UNUSED)
    if rows.has("title"):
        role = role.where(role.notna(), roles_from_titles(rows.text("title").astype(object), rules))
    n_without = int((role.isna().to_numpy() & rows.keep).sum())
    if n_without:
        rows.notes.append(
            f"{rows.label}: {n_without} contact(s) with no buying-committee role "
            "(counted as contacts, not as a role)"
        )
    out = pd.DataFrame(
        {
            "contact_id": ids.astype(object),
            ACCOUNT_ID: account,
            "role": pd.Categorical(role, categories=ROLES),
            CREATED_AT: created,
        }
    )
    out = rows.done(out)
    out[ACCOUNT_ID] = _keyed(out[ACCOUNT_ID].to_numpy(), accounts)
    return out


def _opportunities(rows: _Rows, accounts: pd.Index) -> pd.DataFrame:
    ids = rows.text("opportunity_id")
    rows.unique_ids(ids, "opportunity")
    account = _account_codes(rows, accounts, "opportunity")
    created = rows.dates("created_at", required=True)
    if rows.has("is_closed") and rows.has("is_won"):
        # Salesforce's IsClosed/IsWon hold whatever the org named its stages.
        closed_flag = parse_yes_no(rows.text("is_closed").astype(object))
        won_flag = parse_yes_no(rows.text("is_won").astype(object))
        bad = closed_flag.isna() | (closed_flag.eq(1.0) & won_flag.isna())
        rows.reject(
            bad.to_numpy(),
            f"not a yes/no value in {rows.columns['is_closed']!r} or {rows.columns['is_won']!r}",
        )
        outcome = pd.Series(
            np.where(closed_flag.eq(1.0), np.where(won_flag.eq(1.0), WON, LOST), OPEN),
            index=ids.index,
            dtype=object,
        )
    elif rows.has("stage"):
        stage = rows.text("stage")
        column = rows.columns["stage"]
        rows.reject(stage.isna().to_numpy(), f"missing stage in {column!r}")
        outcome = pd.Series(
            rows.mapped(stage, "stage", column, (WON, LOST, OPEN)), index=ids.index
        ).astype(object)
    else:
        raise AbmInputError(
            "opportunities need a `stage` column (or Salesforce's `is_closed` and `is_won`)",
            source=rows.file,
            field=f"tables.{rows.label}.columns",
        )
    is_closed = outcome.isin((WON, LOST)).to_numpy()
    closed = pd.Series(pd.NaT, index=ids.index, dtype="datetime64[ns]")
    if rows.has("closed_at"):
        raw = rows.frame[rows.columns["closed_at"]]
        if not pd.api.types.is_datetime64_any_dtype(raw):
            raw = _categorical_text(raw)
        parsed, bad = parse_dates(raw, rows.date_formats)
        rows.reject(
            bad.to_numpy() & is_closed,
            f"unparseable close date in {rows.columns['closed_at']!r}",
            detail=raw,
            sep=": ",
        )
        if _date_only(raw):
            # A close date without a time is known by the end of that day, not at midnight:
            # read as midnight it would count as a prior win for a deal created that afternoon.
            parsed = parsed + _END_OF_DAY
        # An open deal's close date is the rep's forecast, not an event: never used.
        closed = parsed.where(is_closed)
    rows.reject(is_closed & closed.isna().to_numpy(), "won or lost deal without a close date")
    rows.reject((closed < created).to_numpy(), "closed before it was created")
    out = pd.DataFrame(
        {
            "opportunity_id": ids.astype(object),
            ACCOUNT_ID: account,
            CREATED_AT: created,
            CLOSED_AT: closed,
            OUTCOME: outcome,
            AMOUNT: rows.numbers("amount"),
            "source": rows.text("source").astype(object),
        }
    )
    out = rows.done(out)
    out[ACCOUNT_ID] = _keyed(out[ACCOUNT_ID].to_numpy(), accounts)
    return out


_END_OF_DAY = pd.Timedelta(days=1) - pd.Timedelta(seconds=1)


def _date_only(raw: pd.Series) -> bool:
    """True for a text column of dates written without a time of day (``2025-03-01``)."""
    if not isinstance(raw.dtype, pd.CategoricalDtype):
        return False
    present = pd.Series(raw.cat.categories.astype(str))
    return bool(len(present)) and not present.str.contains(r"\d:\d", regex=True).any()


def _contact_roles(
    rows: _Rows,
    opportunities: pd.DataFrame,
    contacts: pd.DataFrame,
    con_keys: pd.Index,
    accounts: pd.Index,
) -> pd.DataFrame:
    opp = rows.text("opportunity_id")
    con = rows.text("contact_id")
    rows.reject(opp.isna().to_numpy(), "contact role without an opportunity")
    rows.reject(con.isna().to_numpy(), "contact role without a contact")
    opp_keys = pd.Index(opportunities["opportunity_id"], dtype=object)
    o_pos = _codes(opp, opp_keys)
    c_pos = _codes(con, con_keys)
    rows.known(o_pos, opp, "opportunity", rows.columns["opportunity_id"])
    rows.known(c_pos, con, "contact", rows.columns["contact_id"])
    raw_role = rows.text("role")
    rows.reject(raw_role.isna().to_numpy(), f"missing role in {rows.columns['role']!r}")
    role = rows.mapped(raw_role, "role", rows.columns["role"], ROLES)
    created = rows.dates("created_at", required=False)
    # Without its own date a role is on record from the deal's creation on.
    opp_created = (
        opportunities[CREATED_AT].to_numpy()[np.maximum(o_pos, 0)] if len(opp_keys) else None
    )
    if opp_created is not None:
        created = created.where(created.notna(), pd.Series(opp_created, index=created.index))
    con_account = (
        contacts[ACCOUNT_ID].cat.codes.to_numpy()[np.maximum(c_pos, 0)]
        if len(con_keys)
        else np.full(len(c_pos), -1)
    )
    out = pd.DataFrame(
        {
            "opportunity_id": opp.astype(object),
            "contact_id": con.astype(object),
            ACCOUNT_ID: con_account,
            "role": role,
            CREATED_AT: created,
        }
    )
    out = rows.done(out)
    out[ACCOUNT_ID] = _keyed(out[ACCOUNT_ID].to_numpy(), accounts)
    return out


def _activities(
    rows: _Rows, accounts: pd.Index, contacts: pd.DataFrame, con_keys: pd.Index
) -> pd.DataFrame:
    when = rows.dates("occurred_at", required=True)
    if rows.channel:
        channel = pd.Categorical.from_codes(
            np.full(len(when), CHANNELS.index(rows.channel), np.int32), categories=CHANNELS
        )
    elif rows.has("type"):
        kind = rows.text("type")
        rows.reject(kind.isna().to_numpy(), f"missing type in {rows.columns['type']!r}")
        channel = rows.mapped(kind, "activity type", rows.columns["type"], CHANNELS)
    else:
        raise AbmInputError(
            "an activity table needs a `type` column mapped to channels or a fixed `channel`",
            source=rows.file,
            field=f"tables.{rows.label}",
        )
    account = rows.text("account_id")
    contact = rows.text("contact_id")
    c_pos = _codes(contact, con_keys)
    con_account = contacts[ACCOUNT_ID].cat.codes.to_numpy() if len(con_keys) else np.zeros(0, int)
    # A row without an account takes its contact's.
    acc = np.where(
        account.notna().to_numpy(),
        _codes(account, accounts),
        np.where(c_pos >= 0, con_account[np.maximum(c_pos, 0)] if len(con_keys) else -1, -1),
    ).astype(np.int32)
    unknown_contact = contact.notna().to_numpy() & (c_pos < 0)
    rows.reject(
        unknown_contact & account.isna().to_numpy(),
        "orphan: contact not in contacts and no account",
        detail=contact,
        sep=" (",
    )
    rows.reject(
        account.isna().to_numpy() & contact.isna().to_numpy(),
        "activity without an account or a contact",
    )
    rows.known(acc, account, "account", rows.columns.get("account_id", "account"))
    n_lead = int((unknown_contact & rows.keep).sum())
    if n_lead:
        # Salesforce's WhoId is often a Lead: the touch still counts for the account.
        rows.notes.append(
            f"{rows.label}: {n_lead} activit(ies) of a person not in contacts counted for the account only"
        )
    keep = rows.keep
    out = pd.DataFrame(
        {
            ACCOUNT_ID: _keyed(acc[keep], accounts),
            "contact_id": _keyed(c_pos[keep], con_keys),
            "occurred_at": when.to_numpy()[keep],
            "channel": channel[keep],
            "pages": rows.numbers("pages").to_numpy()[keep],
            "seconds_on_site": rows.numbers("seconds_on_site").to_numpy()[keep],
        }
    )
    if rows.has("campaign_id"):
        # Only campaign-member exports carry it: the features ignore it, the ROI reads it.
        out["campaign_id"] = rows.text("campaign_id").array[keep]
    return out


def _intent(rows: _Rows, accounts: pd.Index) -> pd.DataFrame:
    account = _account_codes(rows, accounts, "intent row")
    week = rows.dates("week_start", required=True, end_of_day=False)
    score = rows.numbers("score")
    rows.reject(
        score.isna().to_numpy(), f"missing or unparseable score in {rows.columns['score']!r}"
    )
    topic = rows.text("topic")
    if topic.isna().any():
        topic = topic.cat.add_categories(["any"]).fillna("any")
    keep = rows.keep
    return pd.DataFrame(
        {
            ACCOUNT_ID: _keyed(account[keep], accounts),
            "week_start": week.to_numpy()[keep],
            "topic": topic.array[keep],
            "score": score.to_numpy()[keep],
        }
    )


_EMPTY = {
    "contacts": {
        "contact_id": object,
        ACCOUNT_ID: object,
        "role": object,
        CREATED_AT: "datetime64[ns]",
    },
    "activities": {
        ACCOUNT_ID: object,
        "contact_id": object,
        "occurred_at": "datetime64[ns]",
        "channel": object,
        "pages": float,
        "seconds_on_site": float,
    },
    "intent": {ACCOUNT_ID: object, "week_start": "datetime64[ns]", "topic": object, "score": float},
}


def _empty(kind: str, accounts: pd.Index) -> pd.DataFrame:
    """An absent optional table: no rows, the canonical columns, keys over the accounts."""
    frame = pd.DataFrame({c: pd.Series(dtype=t) for c, t in _EMPTY[kind].items()})
    frame[ACCOUNT_ID] = _keyed(np.zeros(0, np.int32), accounts)
    return frame


def load_tables(spec: TablesSpec) -> CrmTables:
    """Read every table of a multi-table spec; each row used or rejected with its reason.

    Args:
        spec: The resolved ``tables:`` part of a dataset spec (paths absolute).

    Returns:
        The canonical tables with their rejects and summary.

    Raises:
        AbmInputError: A file is missing or unreadable, or a required column is not in it.
    """
    try:
        return _load_tables(spec)
    finally:
        _DTYPES.clear()


def _load_tables(spec: TablesSpec) -> CrmTables:
    rules = (
        [(r.pattern, r.role) for r in spec.role_rules] if spec.role_rules else DEFAULT_ROLE_RULES
    )
    done: list[_Rows] = []

    def _open(kind: str, part: TableSpec, label: str) -> _Rows:
        # The previous export's raw frame is no longer needed: only its report is kept.
        for rows in done:
            rows.frame = None  # type: ignore[assignment]
        pa.default_memory_pool().release_unused()
        rows = _Rows(kind, part, spec.preset, label)
        done.append(rows)
        return rows

    accounts = _accounts(_open("accounts", spec.accounts, "accounts"))
    acc_keys = pd.Index(accounts[ACCOUNT_ID], dtype=object)
    contacts = (
        _contacts(_open("contacts", spec.contacts, "contacts"), acc_keys, rules)
        if spec.contacts
        else _empty("contacts", acc_keys)
    )
    # One index object per key set: pandas checks an index's uniqueness once and keeps it.
    con_keys = pd.Index(contacts["contact_id"], dtype=object)
    opportunities = _opportunities(
        _open("opportunities", spec.opportunities, "opportunities"), acc_keys
    )
    contact_roles = (
        _contact_roles(
            _open("contact_roles", spec.contact_roles, "contact_roles"),
            opportunities,
            contacts,
            con_keys,
            acc_keys,
        )
        if spec.contact_roles
        else None
    )
    parts = [
        _activities(_open("activities", part, f"activities[{i}]"), acc_keys, contacts, con_keys)
        for i, part in enumerate(spec.activities)
    ]
    # Left in file order: the builder sorts its event keys once, faster than a frame sort.
    activities = pd.concat(parts, ignore_index=True) if parts else _empty("activities", acc_keys)
    intent = (
        _intent(_open("intent", spec.intent, "intent"), acc_keys)
        if spec.intent
        else _empty("intent", acc_keys)
    )
    for rows in done:
        rows.frame = None  # type: ignore[assignment]
    rejects = [r for rows in done for r in rows.rejects]
    summary = {rows.label: rows.report() for rows in done}
    summary["notes"] = [note for rows in done for note in rows.notes]
    return CrmTables(
        accounts=accounts,
        contacts=contacts,
        activities=activities,
        intent=intent,
        opportunities=opportunities,
        contact_roles=contact_roles,
        rejects=pd.concat(rejects, ignore_index=True)
        if rejects
        else pd.DataFrame(columns=REJECT_COLUMNS),
        summary=summary,
    )
