"""The ROI inputs as plain tables with canonical columns, read once and accounted for row by row.

Four tables, each a CSV or Parquet file read through the project's reader
(:func:`abm_ml.data.readers.read_table`, so the same encodings, separators and line numbers
apply as for training data):

* **campaigns** - ``campaign_id, name, channel, cost, start, end``: one row per campaign and
  what it cost over its period. Costs are the denominator of every ratio, so a campaign row
  that cannot be read stops the run (exit 2, naming the file, line and field) instead of
  silently dropping a campaign's spend.
* **touches** (campaign members) - ``campaign_id, account_id, touched_at`` (or
  ``occurred_at``, as the CRM activities table names it) and an optional ``responded`` yes/no:
  one row per account (or contact of an account) a campaign reached.
* **opportunities** - ``opportunity_id, account_id, created_at, closed_at, outcome, amount``;
  ``outcome`` is ``won``, ``lost`` or ``open``.
* **content** (optional) - ``campaign_id, content_id, cost``: content items made for a
  campaign, whose cost is added to the campaign's (as strictly checked as the campaigns).
* **activities** (optional) - ``account_id, occurred_at``: the CRM activities table (web
  visits, email clicks, meetings ...), which defines engagement when given.
* **accounts** (optional) - ``account_id`` and an optional ``is_target`` yes/no flag.

Touches and opportunities whose values cannot be read, or that point at a campaign or an
account the other tables do not hold (orphans), are not used; each appears in
:attr:`RoiTables.rejects` with its file, line, field and reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from abm_ml.data.parsing import missing_mask, parse_dates, parse_numbers
from abm_ml.data.readers import ROW_PROBLEM, SOURCE_ROW, read_table
from abm_ml.data.spec import DEFAULT_MISSING_VALUES, DatasetSpec, SourceSpec
from abm_ml.errors import AbmInputError
from abm_ml.modeling.feature_info import parse_yes_no
from abm_ml.schema import ACCOUNT_ID, AMOUNT, CLOSED_AT, CREATED_AT, LOST, OPEN, OUTCOME, WON

CAMPAIGN_ID = "campaign_id"
OPPORTUNITY_ID = "opportunity_id"
TOUCHED_AT = "touched_at"
OCCURRED_AT = "occurred_at"
"""Accepted in place of ``touched_at``: the date column of the CRM activities table."""
RESPONDED = "responded"
IS_TARGET = "is_target"

CAMPAIGN_COLUMNS = (CAMPAIGN_ID, "name", "channel", "cost", "start", "end")
TOUCH_COLUMNS = (CAMPAIGN_ID, ACCOUNT_ID, TOUCHED_AT)
OPPORTUNITY_COLUMNS = (OPPORTUNITY_ID, ACCOUNT_ID, CREATED_AT, CLOSED_AT, OUTCOME, AMOUNT)
ACCOUNT_COLUMNS = (ACCOUNT_ID,)
CONTENT_COLUMNS = (CAMPAIGN_ID, "content_id", "cost")
ACTIVITY_COLUMNS = (ACCOUNT_ID, OCCURRED_AT)
REJECT_COLUMNS = ("table", "file", "line", "field", "reason")

_MISSING = frozenset(DEFAULT_MISSING_VALUES)
_OUTCOME_WORDS = {WON: WON, LOST: LOST, OPEN: OPEN, "closed won": WON, "closed lost": LOST}


@dataclass
class RoiTables:
    """The validated inputs of the ROI report and the pilot report.

    Attributes:
        campaigns: One row per campaign: ``campaign_id, name, channel, cost, start, end,
            content_cost``; ``cost`` includes ``content_cost``.
        touches: ``campaign_id, account_id, touched_at, responded`` (responded is missing when
            the file has no such column), plus ``file`` and ``line``.
        opportunities: ``opportunity_id, account_id, created_at, closed_at, outcome, amount``.
        accounts: ``account_id, is_target``; every account seen anywhere when no accounts file
            was given (then every account counts as a target).
        activities: ``account_id, occurred_at`` when an activities file was given, else None.
        rejects: Rows not used, with ``table, file, line, field, reason``.
        rows_read: Rows read per table, so that used + rejected can be checked against it.
    """

    campaigns: pd.DataFrame
    touches: pd.DataFrame
    opportunities: pd.DataFrame
    accounts: pd.DataFrame
    activities: pd.DataFrame | None = None
    rejects: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REJECT_COLUMNS))
    rows_read: dict[str, int] = field(default_factory=dict)

    def accounting(self) -> dict[str, dict[str, int]]:
        """Read, used and rejected rows per table (used + rejected == read)."""
        used = {
            "campaigns": len(self.campaigns),
            "content": int(self.rows_read.get("content", 0)),
            "activities": len(self.activities) if self.activities is not None else 0,
            "touches": len(self.touches),
            "opportunities": len(self.opportunities),
            "accounts": len(self.accounts) if "accounts" in self.rows_read else 0,
        }
        rejected = self.rejects.groupby("table").size().to_dict() if len(self.rejects) else {}
        return {
            name: {"read": read, "used": used[name], "rejected": int(rejected.get(name, 0))}
            for name, read in self.rows_read.items()
        }


def _read(path: str | Path, columns: tuple[str, ...], table: str) -> pd.DataFrame:
    """A file's rows as text (CSV) or typed values (Parquet), with the canonical columns checked."""
    return _checked(read_table(SourceSpec(path=str(path))).frame, str(path), columns, table)


def _checked(frame: pd.DataFrame, path: str, columns: tuple[str, ...], table: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise AbmInputError(
            f"the {table} table needs the columns {', '.join(columns)}; missing {', '.join(missing)}",
            source=str(path),
            field=missing[0],
        )
    return frame


class _Rejects:
    """Collects rejected rows; a row is rejected once, for its first problem."""

    def __init__(self, table: str, path: str | Path, frame: pd.DataFrame) -> None:
        self.table, self.file = table, str(path)
        self.lines = frame[SOURCE_ROW].to_numpy()
        self.bad = np.zeros(len(frame), dtype=bool)
        self.rows: list[tuple] = []
        if ROW_PROBLEM in frame.columns:
            self.add(frame[ROW_PROBLEM].notna().to_numpy(), "", frame[ROW_PROBLEM].to_numpy())

    def add(self, mask: np.ndarray, field_name: str, reason: str | np.ndarray) -> None:
        new = np.asarray(mask, dtype=bool) & ~self.bad
        reasons = np.broadcast_to(np.asarray(reason, dtype=object), new.shape)
        for i in np.flatnonzero(new):
            self.rows.append((self.table, self.file, int(self.lines[i]), field_name, reasons[i]))
        self.bad |= new

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=list(REJECT_COLUMNS))


def _text(values: pd.Series) -> pd.Series:
    """Ids and labels as stripped text; placeholders ('', 'null', 'n/a') become missing."""
    text = values.astype("string").str.strip()
    return text.where(~missing_mask(values, _MISSING))


def _dates(values: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Parsed dates, a mask of missing values and a mask of unreadable ones."""
    missing = missing_mask(values, _MISSING)
    parsed, bad = parse_dates(values.where(~missing), ["ISO"])
    return parsed, missing, bad & ~missing


def _fail(path: str | Path, frame: pd.DataFrame, mask: pd.Series, field_name: str, why: str):
    line = int(frame.loc[mask.to_numpy(), SOURCE_ROW].iloc[0])
    raise AbmInputError(f"line {line}: {why}", source=str(path), field=field_name)


def read_campaigns(path: str | Path) -> pd.DataFrame:
    """The campaigns and their costs; any unreadable row stops the run (costs are denominators).

    Raises:
        AbmInputError: A column is missing, or a row has no id, a repeated id, a cost that is
            not a non-negative number, or a start/end that is not a date (or ends before it starts).
    """
    frame = _read(path, CAMPAIGN_COLUMNS, "campaigns")
    if ROW_PROBLEM in frame.columns and frame[ROW_PROBLEM].notna().any():
        problems = frame[ROW_PROBLEM].notna()
        _fail(path, frame, problems, "", str(frame.loc[problems, ROW_PROBLEM].iloc[0]))
    ids = _text(frame[CAMPAIGN_ID])
    if ids.isna().any():
        _fail(path, frame, ids.isna(), CAMPAIGN_ID, "no campaign id")
    if ids.duplicated().any():
        _fail(
            path,
            frame,
            ids.duplicated(),
            CAMPAIGN_ID,
            f"campaign {ids[ids.duplicated()].iloc[0]!r} repeats",
        )
    out = pd.DataFrame({CAMPAIGN_ID: ids.astype(str), "cost": _cost(frame, path)})
    for name in ("start", "end"):
        parsed, missing, bad = _dates(frame[name])
        if (bad | missing).any():
            _fail(path, frame, bad | missing, name, f"the {name} date is missing or not a date")
        out[name] = parsed
    if (out["end"] < out["start"]).any():
        _fail(path, frame, out["end"] < out["start"], "end", "the campaign ends before it starts")
    out["name"] = _text(frame["name"]).fillna(out[CAMPAIGN_ID]).astype(str)
    out["channel"] = _text(frame["channel"]).fillna("unspecified").astype(str)
    return out[list(CAMPAIGN_COLUMNS)].reset_index(drop=True)


def _cost(frame: pd.DataFrame, path: str | Path) -> pd.Series:
    """A cost column as floats; a missing, unreadable or negative cost stops the run."""
    cost, bad = parse_numbers(frame["cost"].where(~missing_mask(frame["cost"], _MISSING)))
    unusable = bad | cost.isna() | (cost < 0)
    if unusable.any():
        _fail(path, frame, unusable, "cost", "the cost must be a number >= 0")
    return cost.astype(float)


def read_content(path: str | Path, campaign_ids: pd.Series) -> tuple[pd.Series, int]:
    """Content cost per campaign id and the rows read; any bad row stops the run, as for campaigns.

    Raises:
        AbmInputError: A column is missing, or a row has no campaign, an unknown campaign, a
            repeated (campaign, content) pair or a cost that is not a non-negative number.
    """
    frame = _read(path, CONTENT_COLUMNS, "content")
    if ROW_PROBLEM in frame.columns and frame[ROW_PROBLEM].notna().any():
        problems = frame[ROW_PROBLEM].notna()
        _fail(path, frame, problems, "", str(frame.loc[problems, ROW_PROBLEM].iloc[0]))
    ids = _text(frame[CAMPAIGN_ID])
    unknown = ids.isna() | ~ids.isin(campaign_ids)
    if unknown.any():
        _fail(
            path,
            frame,
            unknown,
            CAMPAIGN_ID,
            f"campaign {ids[unknown].iloc[0]!r} is not in the campaigns table",
        )
    pairs = pd.DataFrame({"campaign": ids, "content": _text(frame["content_id"])})
    repeated = pairs.duplicated() & pairs["content"].notna()
    if repeated.any():
        _fail(path, frame, repeated, "content_id", "the content item repeats for this campaign")
    cost = _cost(frame, path)
    return cost.groupby(ids.astype(str).to_numpy()).sum(), len(frame)


def _located(frame: pd.DataFrame, path: str | Path, keep: np.ndarray) -> pd.DataFrame:
    out = frame.loc[keep].copy()
    out["file"] = str(path)
    out["line"] = out.pop(SOURCE_ROW).astype(int) if SOURCE_ROW in out else 0
    return out.reset_index(drop=True)


def read_touches(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Campaign members: used rows, rejects and the number of rows read (orphans are checked later)."""
    raw = read_table(SourceSpec(path=str(path)))
    if TOUCHED_AT not in raw.frame.columns and OCCURRED_AT in raw.frame.columns:
        # The CRM tables' activities (campaign members among them) date events as occurred_at.
        raw.frame.rename(columns={OCCURRED_AT: TOUCHED_AT}, inplace=True)
    frame = _checked(raw.frame, str(path), TOUCH_COLUMNS, "touches")
    rejects = _Rejects("touches", path, frame)
    out = pd.DataFrame({SOURCE_ROW: frame[SOURCE_ROW]})
    for name in (CAMPAIGN_ID, ACCOUNT_ID):
        out[name] = _text(frame[name])
        rejects.add(out[name].isna().to_numpy(), name, f"no {name}")
    touched, missing, bad = _dates(frame[TOUCHED_AT])
    rejects.add(missing.to_numpy(), TOUCHED_AT, "no touch date")
    rejects.add(bad.to_numpy(), TOUCHED_AT, "not a date")
    out[TOUCHED_AT] = touched
    if RESPONDED in frame.columns:
        responded = parse_yes_no(frame[RESPONDED].where(~missing_mask(frame[RESPONDED], _MISSING)))
        rejects.add(
            (responded.isna() & ~missing_mask(frame[RESPONDED], _MISSING)).to_numpy(),
            RESPONDED,
            "not a yes/no value",
        )
        out[RESPONDED] = responded.fillna(0.0).astype(bool)
    else:
        out[RESPONDED] = pd.NA
    return _located(out, path, ~rejects.bad), rejects.frame(), len(frame)


def read_opportunities(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Opportunities: used rows, rejects and the number of rows read (orphans are checked later)."""
    frame = _read(path, OPPORTUNITY_COLUMNS, "opportunities")
    rejects = _Rejects("opportunities", path, frame)
    out = pd.DataFrame({SOURCE_ROW: frame[SOURCE_ROW]})
    for name in (OPPORTUNITY_ID, ACCOUNT_ID):
        out[name] = _text(frame[name])
        rejects.add(out[name].isna().to_numpy(), name, f"no {name}")
    rejects.add(
        (out[OPPORTUNITY_ID].duplicated() & out[OPPORTUNITY_ID].notna()).to_numpy(),
        OPPORTUNITY_ID,
        "opportunity id repeats an earlier row",
    )
    outcome = _text(frame[OUTCOME]).str.lower().map(_OUTCOME_WORDS)
    rejects.add(outcome.isna().to_numpy(), OUTCOME, "outcome must be won, lost or open")
    out[OUTCOME] = outcome
    created, missing, bad = _dates(frame[CREATED_AT])
    rejects.add(missing.to_numpy(), CREATED_AT, "no creation date")
    rejects.add(bad.to_numpy(), CREATED_AT, "not a date")
    closed, no_close, bad_close = _dates(frame[CLOSED_AT])
    rejects.add(bad_close.to_numpy(), CLOSED_AT, "not a date")
    rejects.add(
        (no_close & outcome.isin([WON, LOST])).to_numpy(),
        CLOSED_AT,
        "a closed deal needs a close date",
    )
    rejects.add((closed < created).to_numpy(), CLOSED_AT, "closed before it was created")
    amount, bad_amount = parse_numbers(frame[AMOUNT].where(~missing_mask(frame[AMOUNT], _MISSING)))
    rejects.add(bad_amount.to_numpy(), AMOUNT, "not a number")
    rejects.add((amount < 0).to_numpy(), AMOUNT, "negative amount")
    out[CREATED_AT], out[CLOSED_AT] = created, closed.where(outcome != OPEN)
    out[AMOUNT] = amount.fillna(0.0).astype(float)
    return _located(out, path, ~rejects.bad), rejects.frame(), len(frame)


def read_activities(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """CRM activities (any channel): used rows, rejects and the rows read."""
    frame = _read(path, ACTIVITY_COLUMNS, "activities")
    rejects = _Rejects("activities", path, frame)
    out = pd.DataFrame({SOURCE_ROW: frame[SOURCE_ROW], ACCOUNT_ID: _text(frame[ACCOUNT_ID])})
    rejects.add(out[ACCOUNT_ID].isna().to_numpy(), ACCOUNT_ID, "no account_id")
    occurred, missing, bad = _dates(frame[OCCURRED_AT])
    rejects.add(missing.to_numpy(), OCCURRED_AT, "no activity date")
    rejects.add(bad.to_numpy(), OCCURRED_AT, "not a date")
    out[OCCURRED_AT] = occurred
    return _located(out, path, ~rejects.bad), rejects.frame(), len(frame)


def read_accounts(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Accounts with their target flag (every account is a target when the file has none)."""
    frame = _read(path, ACCOUNT_COLUMNS, "accounts")
    rejects = _Rejects("accounts", path, frame)
    ids = _text(frame[ACCOUNT_ID])
    rejects.add(ids.isna().to_numpy(), ACCOUNT_ID, "no account id")
    rejects.add((ids.duplicated() & ids.notna()).to_numpy(), ACCOUNT_ID, "account id repeats")
    out = pd.DataFrame({SOURCE_ROW: frame[SOURCE_ROW], ACCOUNT_ID: ids})
    if IS_TARGET in frame.columns:
        blank = missing_mask(frame[IS_TARGET], _MISSING)
        flag = parse_yes_no(frame[IS_TARGET].where(~blank))
        rejects.add((flag.isna() & ~blank).to_numpy(), IS_TARGET, "not a yes/no value")
        out[IS_TARGET] = flag.fillna(0.0).astype(bool)
    else:
        out[IS_TARGET] = True
    used = _located(out, path, ~rejects.bad)
    return used[[ACCOUNT_ID, IS_TARGET]], rejects.frame(), len(frame)


def _orphans(frame: pd.DataFrame, table: str, column: str, known: pd.Series, what: str):
    """Split off rows whose ``column`` is not in ``known``; they become rejects."""
    orphan = ~frame[column].isin(known)
    rejects = pd.DataFrame(
        {
            "table": table,
            "file": frame.loc[orphan, "file"],
            "line": frame.loc[orphan, "line"],
            "field": column,
            "reason": [
                f"{what} {v!r} is not in the {what}s table" for v in frame.loc[orphan, column]
            ],
        }
    )
    return frame.loc[~orphan].reset_index(drop=True), rejects


def _campaign_costs(
    campaigns: str | Path, content: str | Path | None
) -> tuple[pd.DataFrame, int | None]:
    """The campaigns with their content cost added, and the content rows read (None: no file)."""
    campaign_frame = read_campaigns(campaigns)
    content_cost, content_rows = pd.Series(dtype=float), None
    if content is not None:
        content_cost, content_rows = read_content(content, campaign_frame[CAMPAIGN_ID])
    campaign_frame["content_cost"] = (
        campaign_frame[CAMPAIGN_ID].map(content_cost).fillna(0.0).astype(float)
    )
    campaign_frame["cost"] += campaign_frame["content_cost"]
    return campaign_frame, content_rows


def load_tables(
    campaigns: str | Path,
    touches: str | Path,
    opportunities: str | Path,
    accounts: str | Path | None = None,
    content: str | Path | None = None,
    activities: str | Path | None = None,
) -> RoiTables:
    """Read and validate the ROI inputs; every row read is either used or in ``rejects``.

    Raises:
        AbmInputError: A file is missing or unreadable, lacks a canonical column, a campaign
            row is unusable, or a table keeps no usable row.
    """
    campaign_frame, content_rows = _campaign_costs(campaigns, content)
    touch_frame, touch_rejects, touches_read = read_touches(touches)
    opp_frame, opp_rejects, opps_read = read_opportunities(opportunities)
    rows_read = {
        "campaigns": len(campaign_frame),
        "touches": touches_read,
        "opportunities": opps_read,
    }
    if content_rows is not None:
        rows_read["content"] = int(content_rows)
    parts = [touch_rejects, opp_rejects]
    activity_frame = None
    if activities is not None:
        activity_frame, activity_rejects, rows_read["activities"] = read_activities(activities)
        parts.append(activity_rejects)
    account_frame = None
    if accounts is not None:
        account_frame, account_rejects, rows_read["accounts"] = read_accounts(accounts)
        parts.append(account_rejects)
    return _assemble(
        campaign_frame,
        touch_frame,
        opp_frame,
        account_frame,
        activity_frame,
        parts,
        rows_read,
        {"touches": str(touches), "opportunities": str(opportunities)},
    )


def _assemble(
    campaign_frame: pd.DataFrame,
    touch_frame: pd.DataFrame,
    opp_frame: pd.DataFrame,
    account_frame: pd.DataFrame | None,
    activity_frame: pd.DataFrame | None,
    parts: list[pd.DataFrame],
    rows_read: dict[str, int],
    sources: dict[str, str],
) -> RoiTables:
    """Orphans split off into the rejects; refused when touches or opportunities keep no row."""
    touch_frame, orphans = _orphans(
        touch_frame, "touches", CAMPAIGN_ID, campaign_frame[CAMPAIGN_ID], "campaign"
    )
    parts.append(orphans)
    if account_frame is not None:
        touch_frame, orphans = _orphans(
            touch_frame, "touches", ACCOUNT_ID, account_frame[ACCOUNT_ID], "account"
        )
        parts.append(orphans)
        opp_frame, orphans = _orphans(
            opp_frame, "opportunities", ACCOUNT_ID, account_frame[ACCOUNT_ID], "account"
        )
        parts.append(orphans)
        if activity_frame is not None:
            activity_frame, orphans = _orphans(
                activity_frame, "activities", ACCOUNT_ID, account_frame[ACCOUNT_ID], "account"
            )
            parts.append(orphans)
    else:
        seen = pd.concat([touch_frame[ACCOUNT_ID], opp_frame[ACCOUNT_ID]]).drop_duplicates()
        account_frame = pd.DataFrame({ACCOUNT_ID: seen.to_numpy(), IS_TARGET: True})
    rejects = pd.concat(parts, ignore_index=True)
    for name, frame in (("touches", touch_frame), ("opportunities", opp_frame)):
        if frame.empty:
            reasons = rejects.loc[rejects["table"] == name, "reason"]
            first = f"; first reason: {reasons.iloc[0]}" if len(reasons) else ""
            raise AbmInputError(
                f"no usable {name} row of {rows_read[name]}{first}", source=sources[name]
            )
    return RoiTables(
        campaigns=campaign_frame,
        touches=touch_frame,
        opportunities=opp_frame,
        accounts=account_frame.reset_index(drop=True),
        activities=activity_frame,
        rejects=rejects,
        rows_read=rows_read,
    )


def load_crm_tables(
    campaigns: str | Path, spec: DatasetSpec, content: str | Path | None = None
) -> RoiTables:
    """The ROI inputs from a multi-table CRM spec (``tables:``), with costs from ``campaigns``.

    The CRM objects are read once by :func:`abm_ml.data.tables.load_tables`, as for training:
    touches are the activities that carry a ``campaign_id`` (Salesforce's CampaignMember under
    the preset), the other activities define engagement, opportunities and accounts are the
    CRM's. Rows the CRM reader rejected are listed in ``rejects`` under ``crm:<table>``; a
    date-only CRM date (CloseDate, FirstRespondedDate) is read as known at the end of its day.

    Raises:
        AbmInputError: The spec has no ``tables:``, no activity has a campaign id, a campaign
            row is unusable, or touches or opportunities keep no usable row.
    """
    from abm_ml.data.tables import load_tables as load_crm

    where = str(spec.spec_path or spec.name)
    if spec.tables is None:
        raise AbmInputError(
            "this spec has no `tables:` part (see docs/crm-objects.md)", source=where
        )
    campaign_frame, content_rows = _campaign_costs(campaigns, content)
    crm = load_crm(spec.tables)
    acts = crm.activities
    campaign = (
        _text(acts[CAMPAIGN_ID].astype(object))
        if CAMPAIGN_ID in acts.columns
        else pd.Series(pd.NA, index=acts.index, dtype="string")
    )
    member = campaign.notna().to_numpy()
    if not member.any():
        raise AbmInputError(
            "no activity of this spec has a campaign id: add the campaign members "
            "(Salesforce: `- object: CampaignMember`; otherwise map `campaign_id`)",
            source=where,
            field="tables.activities",
        )
    touches = pd.DataFrame(
        {
            CAMPAIGN_ID: campaign[member].to_numpy(),
            ACCOUNT_ID: _text(acts.loc[member, ACCOUNT_ID].astype(object)).to_numpy(),
            TOUCHED_AT: acts.loc[member, OCCURRED_AT].to_numpy(),
            # A member row's date is its response under the preset; whether a touch engaged
            # its account is read from the other activities, as with an activities file.
            RESPONDED: pd.NA,
        }
    ).astype({CAMPAIGN_ID: "string", ACCOUNT_ID: "string"})
    opp = crm.opportunities
    opportunities = pd.DataFrame(
        {
            OPPORTUNITY_ID: _text(opp["opportunity_id"].astype(object)).to_numpy(),
            ACCOUNT_ID: _text(opp[ACCOUNT_ID].astype(object)).to_numpy(),
            OUTCOME: opp[OUTCOME].to_numpy(),
            CREATED_AT: opp[CREATED_AT].to_numpy(),
            CLOSED_AT: opp[CLOSED_AT].to_numpy(),
            AMOUNT: opp[AMOUNT].fillna(0.0).astype(float).to_numpy(),
        }
    ).astype({OPPORTUNITY_ID: "string", ACCOUNT_ID: "string"})
    others = acts.loc[~member, [ACCOUNT_ID, OCCURRED_AT]]
    activity_frame = (
        pd.DataFrame(
            {
                ACCOUNT_ID: others[ACCOUNT_ID].astype(object).to_numpy(),
                OCCURRED_AT: others[OCCURRED_AT].to_numpy(),
            }
        ).astype({ACCOUNT_ID: "string"})
        if len(others)
        else None
    )
    accounts = pd.DataFrame(
        {ACCOUNT_ID: crm.accounts[ACCOUNT_ID].astype(object).to_numpy(), IS_TARGET: True}
    ).astype({ACCOUNT_ID: "string"})
    label = f"{where} (tables)"
    for frame in (touches, opportunities, activity_frame):
        if frame is not None:
            # The CRM rows carry no line here: the CRM reader's rejects name theirs.
            frame["file"] = label
            frame["line"] = pd.array([pd.NA] * len(frame), dtype="Int64")
    rows_read = {
        "campaigns": len(campaign_frame),
        "touches": len(touches),
        "opportunities": len(opportunities),
        "accounts": len(accounts),
    }
    if activity_frame is not None:
        rows_read["activities"] = len(activity_frame)
    if content_rows is not None:
        rows_read["content"] = int(content_rows)
    crm_rejects = pd.DataFrame(
        {
            "table": "crm:" + crm.rejects["table"].astype(str),
            "file": crm.rejects["file"],
            "line": crm.rejects["line"],
            "field": "",
            "reason": crm.rejects["reason"],
        },
        columns=list(REJECT_COLUMNS),
    )
    return _assemble(
        campaign_frame,
        touches,
        opportunities,
        accounts,
        activity_frame,
        [crm_rejects],
        rows_read,
        {"touches": label, "opportunities": label},
    )
