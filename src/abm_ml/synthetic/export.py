"""The synthetic world written as a CRM would export it: Salesforce or HubSpot objects, or Parquet.

:func:`export_world` makes the generator one more producer of the tables a multi-table spec
reads (``training/specs/synthetic-salesforce.yaml``, ``synthetic-hubspot.yaml``,
``synthetic-tables.yaml``), with the CRM's real export field names:

* ``salesforce``: Account, Contact (titles only: roles come from the title rules),
  Opportunity (StageName, IsClosed, IsWon, a date-only CloseDate that is the forecast while
  open), OpportunityContactRole, Task (marketing-automation touches), Event (meetings), plus
  ``WebSession.csv`` (web analytics) and ``Intent.csv`` (a third-party intent feed), which no
  CRM object holds.
* ``hubspot``: companies, contacts (``hs_buying_role`` where the role has a HubSpot value,
  else the job title decides), deals, engagements, plus the same web and intent files.
* ``parquet``: the world's tables with abm-ml's own column names.

Custom fields (``Region__c``, ``tech_stack``...) carry the synthetic firmographics a CRM
does not have as standard fields; the specs map them with ``columns:`` overrides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from abm_ml.data.presets import HUBSPOT, SALESFORCE
from abm_ml.schema import ACCOUNT_ID, AMOUNT, CLOSED_AT, CREATED_AT, OUTCOME, WON
from abm_ml.synthetic.world import World

__all__ = ["EXPORT_FORMATS", "export_world"]

ExportFormat = Literal["salesforce", "hubspot", "parquet"]
EXPORT_FORMATS: tuple[str, ...] = ("salesforce", "hubspot", "parquet")

# Channels logged as activities of a CRM object (the rest go to the web and intent files).
_WEB = "web_visit"
_MEETING = "sales_meeting"


def _reverse(values: dict[str, str]) -> dict[str, str]:
    """abm-ml value -> the first export value the preset maps to it."""
    out: dict[str, str] = {}
    for export_value, ours in values.items():
        out.setdefault(ours, export_value)
    return out


def _iso(values: pd.Series) -> pd.Series:
    """Timestamps as the APIs write them: ISO 8601 in UTC with milliseconds."""
    ts = pd.to_datetime(values)
    text = ts.dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return text.where(ts.notna(), "")


def _prefixed(prefix: str, values: pd.Series) -> pd.Series:
    text = values.astype(object)
    return pd.Series(
        np.where(pd.isna(text), "", prefix + text.astype(str)), index=values.index, dtype=object
    )


def _split_activities(world: World) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Web sessions, meetings and every other touch."""
    act = world.activities
    channel = act["channel"].astype(str)
    return act[channel == _WEB], act[channel == _MEETING], act[~channel.isin([_WEB, _MEETING])]


def _web_and_intent(world: World, out: Path, account_key, contact_key) -> None:
    web, _, _ = _split_activities(world)
    pd.DataFrame(
        {
            "account_id": account_key(web[ACCOUNT_ID]),
            "contact_id": contact_key(web["contact_id"]),
            "occurred_at": _iso(web["occurred_at"]),
            "pages": web["pages"].to_numpy(),
            "seconds_on_site": web["seconds_on_site"].to_numpy(),
        }
    ).to_csv(out / "WebSession.csv", index=False)
    intent = world.intent
    pd.DataFrame(
        {
            "account_id": account_key(intent[ACCOUNT_ID]),
            "week_start": pd.to_datetime(intent["week_start"]).dt.strftime("%Y-%m-%d"),
            "topic": intent["topic"].astype(str).to_numpy(),
            "score": intent["score"].to_numpy(),
        }
    ).to_csv(out / "Intent.csv", index=False)


def _contact_roles(world: World, max_per_deal: int = 3) -> pd.DataFrame:
    """Contacts on each deal: up to ``max_per_deal`` of the account's contacts with a role
    created before the deal, recorded a day after the deal was created."""
    opp = world.opportunities[["opportunity_id", ACCOUNT_ID, CREATED_AT]].astype({ACCOUNT_ID: str})
    con = world.contacts[["contact_id", ACCOUNT_ID, "role", CREATED_AT]].astype(
        {ACCOUNT_ID: str, "role": str}
    )
    pairs = opp.merge(con, on=ACCOUNT_ID, suffixes=("", "_contact"))
    pairs = pairs[pairs[f"{CREATED_AT}_contact"] < pairs[CREATED_AT]]
    pairs = pairs.groupby("opportunity_id", sort=False).head(max_per_deal)
    return pd.DataFrame(
        {
            "opportunity_id": pairs["opportunity_id"].to_numpy(),
            "contact_id": pairs["contact_id"].to_numpy(),
            "role": pairs["role"].to_numpy(),
            CREATED_AT: (pairs[CREATED_AT] + pd.Timedelta(days=1)).to_numpy(),
        }
    )


def _close_or_forecast(opp: pd.DataFrame) -> pd.Series:
    """The close date, or while open the rep's forecast (90 days after creation), as CRMs keep
    it: the reader must never take a forecast for an event."""
    forecast = pd.to_datetime(opp[CREATED_AT]) + pd.Timedelta(days=90)
    return pd.to_datetime(opp[CLOSED_AT]).where(opp[OUTCOME].astype(str) != "open", forecast)


def _salesforce(world: World, out: Path) -> None:
    acc = world.accounts
    account_key = lambda s: _prefixed("001", s)
    contact_key = lambda s: _prefixed("003", s)
    owners = pd.Series(acc["owner"].astype(object))
    owner_ids = {name: f"005{i:012d}" for i, name in enumerate(sorted(owners.dropna().unique()))}
    pd.DataFrame(
        {
            "Id": account_key(acc[ACCOUNT_ID]),
            "Name": acc["name"],
            "Industry": acc["industry"].astype(str),
            "Region__c": acc["region"].astype(str),
            "NumberOfEmployees": acc["employees"],
            "AnnualRevenue": acc["annual_revenue"],
            "OwnerId": owners.map(owner_ids).fillna(""),
            "ParentId": account_key(acc["parent_account_id"]),
            "YearStarted": acc["founded_year"],
            "Tech_Stack__c": acc["tech_stack"].astype(str),
            "Uses_Competitor__c": np.where(acc["uses_competitor"], "true", "false"),
            "Fiscal_Year_End_Month__c": acc["fiscal_year_end_month"],
            "Data_Quality_Score__c": acc["crm_data_quality"],
        }
    ).to_csv(out / SALESFORCE["Account"].file, index=False)
    con = world.contacts
    pd.DataFrame(
        {
            "Id": contact_key(con["contact_id"]),
            "AccountId": account_key(con[ACCOUNT_ID]),
            "Title": con["title"].astype(str),
            "CreatedDate": _iso(con[CREATED_AT]),
        }
    ).to_csv(out / SALESFORCE["Contact"].file, index=False)
    opp = world.opportunities
    outcome = opp[OUTCOME].astype(str)
    is_closed = outcome != "open"
    close = _close_or_forecast(opp)
    pd.DataFrame(
        {
            "Id": _prefixed("006", opp["opportunity_id"]),
            "AccountId": account_key(opp[ACCOUNT_ID]),
            "CreatedDate": _iso(opp[CREATED_AT]),
            "CloseDate": close.dt.strftime("%Y-%m-%d"),
            "StageName": np.where(
                is_closed,
                np.where(outcome == WON, "Closed Won", "Closed Lost"),
                "Negotiation/Review",
            ),
            "IsClosed": np.where(is_closed, "true", "false"),
            "IsWon": np.where(outcome == WON, "true", "false"),
            "Amount": opp[AMOUNT],
            "LeadSource": opp["source"].astype(str),
        }
    ).to_csv(out / SALESFORCE["Opportunity"].file, index=False)
    roles = _contact_roles(world)
    role_value = _reverse(SALESFORCE["OpportunityContactRole"].values)
    pd.DataFrame(
        {
            "Id": [f"00K{i:012d}" for i in range(len(roles))],
            "OpportunityId": _prefixed("006", roles["opportunity_id"]),
            "ContactId": contact_key(roles["contact_id"]),
            "Role": roles["role"].map(role_value),
            "CreatedDate": _iso(roles[CREATED_AT]),
        }
    ).to_csv(out / SALESFORCE["OpportunityContactRole"].file, index=False)
    _, meetings, touches = _split_activities(world)
    task_type = _reverse(SALESFORCE["Task"].values)
    pd.DataFrame(
        {
            "Id": [f"00T{i:012d}" for i in range(len(touches))],
            "AccountId": account_key(touches[ACCOUNT_ID]),
            "WhoId": contact_key(touches["contact_id"]),
            "CreatedDate": _iso(touches["occurred_at"]),
            "Type": touches["channel"].astype(str).map(task_type).to_numpy(),
            "Subject": touches["channel"].astype(str).str.replace("_", " ").to_numpy(),
        }
    ).to_csv(out / SALESFORCE["Task"].file, index=False)
    pd.DataFrame(
        {
            "Id": [f"00U{i:012d}" for i in range(len(meetings))],
            "AccountId": account_key(meetings[ACCOUNT_ID]),
            "WhoId": contact_key(meetings["contact_id"]),
            "StartDateTime": _iso(meetings["occurred_at"]),
            "Subject": "Meeting",
        }
    ).to_csv(out / SALESFORCE["Event"].file, index=False)
    _web_and_intent(world, out, account_key, contact_key)


def _hubspot(world: World, out: Path) -> None:
    acc = world.accounts
    company = pd.Series(np.arange(1, len(acc) + 1) + 1_000_000, index=acc[ACCOUNT_ID].to_numpy())
    person = pd.Series(
        np.arange(1, len(world.contacts) + 1) + 50_000_000,
        index=world.contacts["contact_id"].to_numpy(),
    )

    def account_key(values: pd.Series) -> pd.Series:
        return values.astype(object).map(company).astype("Int64")

    def contact_key(values: pd.Series) -> pd.Series:
        return values.astype(object).map(person).astype("Int64")

    owners = pd.Series(acc["owner"].astype(object))
    owner_ids = {name: 70_000 + i for i, name in enumerate(sorted(owners.dropna().unique()))}
    pd.DataFrame(
        {
            "hs_object_id": company.to_numpy(),
            "name": acc["name"],
            "industry": acc["industry"].astype(str),
            "abm_region": acc["region"].astype(str),
            "numberofemployees": acc["employees"],
            "annualrevenue": acc["annual_revenue"],
            "hubspot_owner_id": owners.map(owner_ids).astype("Int64"),
            "hs_parent_company_id": account_key(acc["parent_account_id"]),
            "founded_year": acc["founded_year"],
            "tech_stack": acc["tech_stack"].astype(str),
            "uses_competitor": np.where(acc["uses_competitor"], "Yes", "No"),
            "fiscal_year_end_month": acc["fiscal_year_end_month"],
            "crm_data_quality": acc["crm_data_quality"],
        }
    ).to_csv(out / HUBSPOT["companies"].file, index=False)
    con = world.contacts
    role_value = _reverse(HUBSPOT["contacts"].values)
    # HubSpot has no "stakeholder" buying role: those contacts keep a blank one and the
    # title rules decide, as they do for contacts nobody tagged.
    role_value.pop("stakeholder", None)
    pd.DataFrame(
        {
            "hs_object_id": contact_key(con["contact_id"]),
            "associatedcompanyid": account_key(con[ACCOUNT_ID]),
            "jobtitle": con["title"].astype(str),
            "hs_buying_role": con["role"].astype(str).map(role_value).fillna(""),
            "createdate": _iso(con[CREATED_AT]),
        }
    ).to_csv(out / HUBSPOT["contacts"].file, index=False)
    opp = world.opportunities
    outcome = opp[OUTCOME].astype(str)
    pd.DataFrame(
        {
            "hs_object_id": np.arange(1, len(opp) + 1) + 90_000_000,
            "associatedcompanyid": account_key(opp[ACCOUNT_ID]),
            "createdate": _iso(opp[CREATED_AT]),
            "closedate": _iso(_close_or_forecast(opp)),
            "dealstage": outcome.map(
                {"won": "closedwon", "lost": "closedlost", "open": "contractsent"}
            ),
            "amount": opp[AMOUNT],
            "hs_analytics_source": opp["source"].astype(str),
        }
    ).to_csv(out / HUBSPOT["deals"].file, index=False)
    _, meetings, touches = _split_activities(world)
    both = pd.concat([touches, meetings]).sort_values([ACCOUNT_ID, "occurred_at"], kind="stable")
    kind = _reverse(HUBSPOT["engagements"].values)
    pd.DataFrame(
        {
            "hs_object_id": np.arange(1, len(both) + 1) + 300_000_000,
            "associatedcompanyid": account_key(both[ACCOUNT_ID]),
            "associatedcontactid": contact_key(both["contact_id"]),
            "hs_timestamp": _iso(both["occurred_at"]),
            "hs_engagement_type": both["channel"].astype(str).map(kind).to_numpy(),
        }
    ).to_csv(out / HUBSPOT["engagements"].file, index=False)
    _web_and_intent(world, out, account_key, contact_key)


def export_world(world: World, out: str | Path, fmt: ExportFormat) -> Path:
    """Write the world's tables as ``fmt`` exports into the folder ``out``.

    Args:
        world: The world to write.
        out: Target folder, created when missing.
        fmt: ``salesforce``, ``hubspot`` or ``parquet``.

    Returns:
        The folder written to.

    Raises:
        ValueError: An unknown format.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "salesforce":
        _salesforce(world, folder)
    elif fmt == "hubspot":
        _hubspot(world, folder)
    elif fmt == "parquet":
        world.save(folder)
    else:
        raise ValueError(f"unknown export format {fmt!r} (one of {', '.join(EXPORT_FORMATS)})")
    return folder
