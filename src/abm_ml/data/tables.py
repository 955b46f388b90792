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
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from abm_ml.data.parsing import clean_text, parse_dates, parse_numbers
from abm_ml.data.presets import REQUIRED_COLUMNS, TABLE_COLUMNS, object_preset
from abm_ml.data.readers import ROW_PROBLEM, SOURCE_ROW, read_table, require_columns
from abm_ml.data.roles import DEFAULT_ROLE_RULES, ROLES, roles_from_titles
from abm_ml.data.spec import DEFAULT_MISSING_VALUES, SourceSpec, TableSpec, TablesSpec
from abm_ml.errors import AbmInputError
from abm_ml.modeling.feature_info import parse_yes_no
from abm_ml.schema import ACCOUNT_ID, AMOUNT, CLOSED_AT, CREATED_AT, LOST, OPEN, OUTCOME, WON

if TYPE_CHECKING:
    from abm_ml.synthetic.world import World

__all__ = ["CHANNELS", "REJECT_COLUMNS", "CrmTables", "load_tables", "segment_of"]

CHANNELS = (
    "web_visit",
    "content_download",
    "email_open",
    "email_click",
    "paid_impression",
    "video_completion",
    "event_attended",
    "webinar_attended",
    "sales_meeting",
)
"""Engagement channels the features count; activity types map onto these."""

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
            ``channel`` (one of :data:`CHANNELS`), ``pages``, ``seconds_on_site``.
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
        raw = read_table(
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
        self.notes: list[str] = []
        if ROW_PROBLEM in frame.columns:
            self.reject(frame[ROW_PROBLEM].notna().to_numpy(), frame[ROW_PROBLEM])

    def has(self, role: str) -> bool:
        return role in self.columns

    def text(self, role: str) -> pd.Series:
        """The mapped column as stripped text (missing placeholders as missing)."""
        if role not in self.columns:
            return pd.Series(None, index=self.frame.index, dtype=object)
        values = clean_text(self.frame[self.columns[role]], _TOKENS)
        return values.map(_as_key).astype(object)

    def dates(self, role: str, *, required: bool, end_of_day: bool = True) -> pd.Series:
        """Parsed timestamps; unparseable (and, when ``required``, missing) ones rejected.

        With ``end_of_day`` a column of dates without a time (Salesforce's CloseDate,
        FirstRespondedDate) is read as known at the end of that day, not at midnight: read
        as midnight, a touch of that afternoon would count for a deal created that morning.
        """
        raw = self.frame[self.columns[role]] if role in self.columns else None
        if raw is None:
            if required:
                self.reject(np.ones(len(self.frame), bool), f"no {role} column")
            return pd.Series(pd.NaT, index=self.frame.index, dtype="datetime64[ns]")
        raw = clean_text(raw, _TOKENS) if not pd.api.types.is_datetime64_any_dtype(raw) else raw
        parsed, bad = parse_dates(raw, self.date_formats)
        column = self.columns[role]
        self.reject(
            bad.to_numpy(), "unparseable timestamp in " + repr(column) + ": " + raw.astype(str)
        )
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
        parsed, bad = parse_numbers(clean_text(raw, _TOKENS))
        n_bad = int((bad.to_numpy() & self.keep).sum())
        if n_bad:
            self.notes.append(
                f"{self.label}: {n_bad} unparseable value(s) in {self.columns[role]!r} read as missing"
            )
        return parsed.astype(float)

    def mapped(self, raw: pd.Series, what: str, column: str) -> pd.Series:
        """Values through the ``values`` map (``*`` for any other); unmapped rows rejected."""
        out = raw.map(
            lambda v: self.values.get(v, self.values.get(_ANY)) if v is not None else None
        )
        out = out.where(out.notna(), raw.where(raw.isin(_IDENTITY[what])))
        present = raw.notna().to_numpy()
        self.reject(
            present & out.isna().to_numpy(),
            f"{what} not mapped in tables.{self.label}.values ({column!r}: "
            + raw.astype(str)
            + ")",
        )
        self.reject(
            (out == _UNUSED).to_numpy(),
            f"{what} not used by abm-ml ({column!r}: " + raw.astype(str) + ")",
        )
        return out.where(out != _UNUSED)

    def reject(self, mask: np.ndarray, reason: str | pd.Series) -> None:
        """Reject the rows in ``mask`` not rejected yet (one reason per row: the first)."""
        mask = np.asarray(mask, dtype=bool) & self.keep
        if not mask.any():
            return
        reasons = reason[mask].astype(str).to_numpy() if isinstance(reason, pd.Series) else reason
        key_role = TABLE_COLUMNS[self.kind][0]
        key = self.frame[self.columns[key_role]][mask] if key_role in self.columns else None
        self.rejects.append(
            pd.DataFrame(
                {
                    "table": self.label,
                    "file": self.file,
                    "line": self.frame[SOURCE_ROW].to_numpy()[mask],
                    "reason": reasons,
                    "key": key.astype(str).to_numpy() if key is not None else None,
                }
            )
        )
        self.keep &= ~mask

    def unique_ids(self, ids: pd.Series, what: str) -> None:
        """Reject rows without an id and rows repeating an earlier row's id."""
        self.reject(ids.isna().to_numpy(), f"missing {what} id")
        live = ids.where(self.keep)
        dup = live.duplicated(keep="first").to_numpy() & live.notna().to_numpy()
        if dup.any():
            first = pd.Series(self.frame[SOURCE_ROW].to_numpy(), index=live.to_numpy()).loc[
                lambda s: ~s.index.duplicated()
            ]
            lines = live[dup].map(first).astype(str)
            reasons = pd.Series("", index=ids.index, dtype=object)
            reasons[dup] = f"duplicate {what} id (first on line " + lines + ")"
            self.reject(dup, reasons)

    def known(self, keys: pd.Series, parents: pd.Index, what: str, column: str) -> np.ndarray:
        """Reject rows whose key is given but not among ``parents`` (orphans); True where found."""
        found = parents.get_indexer(keys.astype(object)) >= 0
        given = keys.notna().to_numpy()
        self.reject(
            given & ~found,
            f"orphan: {what} not in {what}s ({column!r}: " + keys.astype(str) + ")",
        )
        return found

    def done(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame.loc[self.keep].reset_index(drop=True)

    def report(self) -> dict:
        rejected = int(self.n_read - self.keep.sum())
        reasons = (
            pd.concat(self.rejects)["reason"].str.replace(r" \(.*$|: .*$", "", regex=True)
            if self.rejects
            else pd.Series(dtype=object)
        )
        return {
            "file": self.file,
            "read": self.n_read,
            "used": int(self.keep.sum()),
            "rejected": rejected,
            "rejected_by_reason": {str(k): int(v) for k, v in reasons.value_counts().items()},
        }


_IDENTITY = {
    "stage": (WON, LOST, OPEN),
    "activity type": CHANNELS,
    "role": ROLES,
}


def _as_key(value: object) -> object:
    """Ids as text: a Parquet or SQL export may type them as integers (HubSpot ids are)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --------------------------------------------------------------------------------------------
# The tables
# --------------------------------------------------------------------------------------------


def _accounts(rows: _Rows) -> pd.DataFrame:
    ids = rows.text("account_id")
    rows.unique_ids(ids, "account")
    out = pd.DataFrame({ACCOUNT_ID: ids})
    for col in _ACCOUNT_TEXT:
        out[col] = rows.text(col)
    for col in _ACCOUNT_NUMBERS:
        out[col] = rows.numbers(col)
    if not rows.has("segment"):
        out["segment"] = segment_of(out["employees"])
    out["uses_competitor"] = (
        parse_yes_no(rows.text("uses_competitor")) == 1.0
        if rows.has("uses_competitor")
        else pd.Series(None, index=out.index, dtype=object)
    )
    out["owner_assigned"] = out["owner"].notna() if rows.has("owner") else None
    return rows.done(out)


def _contacts(rows: _Rows, accounts: pd.Index, rules) -> pd.DataFrame:
    ids = rows.text("contact_id")
    rows.unique_ids(ids, "contact")
    account = rows.text("account_id")
    rows.reject(account.isna().to_numpy(), "contact without an account")
    rows.known(account, accounts, "account", rows.columns.get("account_id", ""))
    created = rows.dates("created_at", required=True)
    role = pd.Series(None, index=ids.index, dtype=object)
    if rows.has("role"):
        raw = rows.text("role")
        role = raw.map(lambda v: rows.values.get(v, v if v in ROLES else None))
        unmapped = raw.notna() & role.isna() & pd.Series(rows.keep, index=raw.index)
        if unmapped.any():
            rows.notes.append(
                f"{rows.label}: {int(unmapped.sum())} role value(s) not mapped "
                f"({', '.join(sorted(raw[unmapped].unique())[:5])}); their titles decide"
            )
        role = role.where(role != _UNUSED)
    if rows.has("title"):
        role = role.where(role.notna(), roles_from_titles(rows.text("title"), rules))
    n_without = int((role.isna().to_numpy() & rows.keep).sum())
    if n_without:
        rows.notes.append(
            f"{rows.label}: {n_without} contact(s) with no buying-committee role "
            "(counted as contacts, not as a role)"
        )
    out = pd.DataFrame({"contact_id": ids, ACCOUNT_ID: account, "role": role, CREATED_AT: created})
    return rows.done(out)


def _opportunities(rows: _Rows, accounts: pd.Index) -> pd.DataFrame:
    ids = rows.text("opportunity_id")
    rows.unique_ids(ids, "opportunity")
    account = rows.text("account_id")
    rows.reject(account.isna().to_numpy(), "opportunity without an account")
    rows.known(account, accounts, "account", rows.columns.get("account_id", ""))
    created = rows.dates("created_at", required=True)
    if rows.has("is_closed") and rows.has("is_won"):
        # Salesforce's IsClosed/IsWon hold whatever the org named its stages.
        closed_flag = parse_yes_no(rows.text("is_closed"))
        won_flag = parse_yes_no(rows.text("is_won"))
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
        outcome = rows.mapped(rows.text("stage"), "stage", rows.columns["stage"])
        rows.reject(outcome.isna().to_numpy(), f"missing stage in {rows.columns['stage']!r}")
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
        parsed, bad = parse_dates(
            clean_text(raw, _TOKENS) if not pd.api.types.is_datetime64_any_dtype(raw) else raw,
            rows.date_formats,
        )
        rows.reject(
            bad.to_numpy() & is_closed,
            f"unparseable close date in {rows.columns['closed_at']!r}",
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
            "opportunity_id": ids,
            ACCOUNT_ID: account,
            CREATED_AT: created,
            CLOSED_AT: closed,
            OUTCOME: outcome,
            AMOUNT: rows.numbers("amount"),
            "source": rows.text("source"),
        }
    )
    return rows.done(out)


_END_OF_DAY = pd.Timedelta(days=1) - pd.Timedelta(seconds=1)


def _date_only(raw: pd.Series) -> bool:
    """True for a text column of dates written without a time of day (``2025-03-01``)."""
    if pd.api.types.is_datetime64_any_dtype(raw) or pd.api.types.is_numeric_dtype(raw):
        return False
    present = pd.Series(pd.unique(raw.dropna().astype(str)))
    return bool(len(present)) and not present.str.contains(r"\d:\d", regex=True).any()


def _contact_roles(
    rows: _Rows, opportunities: pd.DataFrame, contacts: pd.DataFrame
) -> pd.DataFrame:
    opp = rows.text("opportunity_id")
    con = rows.text("contact_id")
    rows.reject(opp.isna().to_numpy(), "contact role without an opportunity")
    rows.reject(con.isna().to_numpy(), "contact role without a contact")
    opp_keys = pd.Index(opportunities["opportunity_id"])
    con_keys = pd.Index(contacts["contact_id"])
    rows.known(opp, opp_keys, "opportunity", rows.columns["opportunity_id"])
    rows.known(con, con_keys, "contact", rows.columns["contact_id"])
    role = rows.mapped(rows.text("role"), "role", rows.columns["role"])
    rows.reject(role.isna().to_numpy(), f"missing role in {rows.columns['role']!r}")
    created = rows.dates("created_at", required=False)
    o_pos = np.maximum(opp_keys.get_indexer(opp.astype(object)), 0)
    c_pos = np.maximum(con_keys.get_indexer(con.astype(object)), 0)
    # Without its own date a role is on record from the deal's creation on.
    opp_created = opportunities[CREATED_AT].to_numpy()[o_pos] if len(opp_keys) else created
    created = created.where(created.notna(), pd.Series(opp_created, index=created.index))
    out = pd.DataFrame(
        {
            "opportunity_id": opp,
            "contact_id": con,
            ACCOUNT_ID: contacts[ACCOUNT_ID].to_numpy()[c_pos] if len(con_keys) else None,
            "role": role,
            CREATED_AT: created,
        }
    )
    return rows.done(out)


def _activities(rows: _Rows, accounts: pd.Index, contacts: pd.DataFrame) -> pd.DataFrame:
    when = rows.dates("occurred_at", required=True)
    if rows.channel:
        channel = pd.Series(rows.channel, index=when.index, dtype=object)
    elif rows.has("type"):
        channel = rows.mapped(rows.text("type"), "activity type", rows.columns["type"])
        rows.reject(channel.isna().to_numpy(), f"missing type in {rows.columns['type']!r}")
    else:
        raise AbmInputError(
            "an activity table needs a `type` column mapped to channels or a fixed `channel`",
            source=rows.file,
            field=f"tables.{rows.label}",
        )
    account = rows.text("account_id")
    contact = rows.text("contact_id")
    con_keys = pd.Index(contacts["contact_id"])
    c_pos = con_keys.get_indexer(contact.astype(object))
    contact_account = pd.Series(
        np.where(c_pos >= 0, contacts[ACCOUNT_ID].to_numpy()[np.maximum(c_pos, 0)], None)
        if len(con_keys)
        else None,
        index=account.index,
        dtype=object,
    )
    account = account.where(account.notna(), contact_account)
    unknown_contact = contact.notna().to_numpy() & (c_pos < 0)
    rows.reject(
        unknown_contact & account.isna().to_numpy(),
        "orphan: contact not in contacts and no account (" + contact.astype(str) + ")",
    )
    rows.reject(account.isna().to_numpy(), "activity without an account or a contact")
    rows.known(account, accounts, "account", rows.columns.get("account_id", "account"))
    n_lead = int((unknown_contact & rows.keep).sum())
    if n_lead:
        # Salesforce's WhoId is often a Lead: the touch still counts for the account.
        rows.notes.append(
            f"{rows.label}: {n_lead} activit(ies) of a person not in contacts counted for the account only"
        )
    out = pd.DataFrame(
        {
            ACCOUNT_ID: account,
            "contact_id": contact.where(~pd.Series(unknown_contact, index=contact.index)),
            "occurred_at": when,
            "channel": channel,
            "pages": rows.numbers("pages"),
            "seconds_on_site": rows.numbers("seconds_on_site"),
        }
    )
    return rows.done(out)


def _intent(rows: _Rows, accounts: pd.Index) -> pd.DataFrame:
    account = rows.text("account_id")
    rows.reject(account.isna().to_numpy(), "intent row without an account")
    rows.known(account, accounts, "account", rows.columns["account_id"])
    week = rows.dates("week_start", required=True, end_of_day=False)
    score, bad = parse_numbers(clean_text(rows.frame[rows.columns["score"]], _TOKENS))
    rows.reject(
        bad.to_numpy() | score.isna().to_numpy(),
        f"missing or unparseable score in {rows.columns['score']!r}",
    )
    topic = rows.text("topic").fillna("any")
    out = pd.DataFrame(
        {ACCOUNT_ID: account, "week_start": week, "topic": topic, "score": score.astype(float)}
    )
    return rows.done(out)


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


def _empty(kind: str) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _EMPTY[kind].items()})


def load_tables(spec: TablesSpec) -> CrmTables:
    """Read every table of a multi-table spec; each row used or rejected with its reason.

    Args:
        spec: The resolved ``tables:`` part of a dataset spec (paths absolute).

    Returns:
        The canonical tables with their rejects and summary.

    Raises:
        AbmInputError: A file is missing or unreadable, or a required column is not in it.
    """
    rules = (
        [(r.pattern, r.role) for r in spec.role_rules] if spec.role_rules else DEFAULT_ROLE_RULES
    )
    done: list[_Rows] = []

    def _open(kind: str, part: TableSpec, label: str) -> _Rows:
        rows = _Rows(kind, part, spec.preset, label)
        done.append(rows)
        return rows

    accounts = _accounts(_open("accounts", spec.accounts, "accounts"))
    acc_keys = pd.Index(accounts[ACCOUNT_ID])
    contacts = (
        _contacts(_open("contacts", spec.contacts, "contacts"), acc_keys, rules)
        if spec.contacts
        else _empty("contacts")
    )
    opportunities = _opportunities(
        _open("opportunities", spec.opportunities, "opportunities"), acc_keys
    )
    contact_roles = (
        _contact_roles(
            _open("contact_roles", spec.contact_roles, "contact_roles"), opportunities, contacts
        )
        if spec.contact_roles
        else None
    )
    parts = [
        _activities(_open("activities", part, f"activities[{i}]"), acc_keys, contacts)
        for i, part in enumerate(spec.activities)
    ]
    activities = pd.concat(parts, ignore_index=True) if parts else _empty("activities")
    activities = activities.sort_values(
        [ACCOUNT_ID, "occurred_at"], kind="stable", ignore_index=True
    )
    intent = (
        _intent(_open("intent", spec.intent, "intent"), acc_keys)
        if spec.intent
        else _empty("intent")
    )
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
