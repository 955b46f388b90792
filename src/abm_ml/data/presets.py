"""Export field names of Salesforce and HubSpot objects, mapped to abm-ml's table columns.

A multi-table spec (``tables:`` in a dataset spec, see :mod:`abm_ml.data.spec` and
``docs/crm-objects.md``) names a preset; each table then needs only its file, and any column
or value mapping can be overridden key by key. :data:`TABLE_COLUMNS` lists the columns each
table can map; without a preset (``generic``) the export uses those names as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

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

TABLE_COLUMNS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "accounts": (
            "account_id",
            "industry",
            "region",
            "segment",
            "tech_stack",
            "employees",
            "annual_revenue",
            "uses_competitor",
            "owner",
            "parent_account_id",
            "founded_year",
            "fiscal_year_end_month",
            "crm_data_quality",
        ),
        "contacts": ("contact_id", "account_id", "title", "role", "created_at"),
        "opportunities": (
            "opportunity_id",
            "account_id",
            "created_at",
            "closed_at",
            "stage",
            "is_closed",
            "is_won",
            "amount",
            "source",
        ),
        "contact_roles": ("opportunity_id", "contact_id", "role", "created_at"),
        "activities": (
            "account_id",
            "contact_id",
            "occurred_at",
            "type",
            "pages",
            "seconds_on_site",
            "campaign_id",
        ),
        "intent": ("account_id", "week_start", "topic", "score"),
    }
)
"""Columns each table can map (the first one or two are its keys)."""

REQUIRED_COLUMNS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "accounts": ("account_id",),
        "contacts": ("contact_id", "account_id", "created_at"),
        "opportunities": ("opportunity_id", "account_id", "created_at"),
        "contact_roles": ("opportunity_id", "contact_id", "role"),
        "activities": ("occurred_at",),
        "intent": ("account_id", "week_start", "score"),
    }
)
"""Columns a table cannot do without (activities also need an account or a contact)."""


def allowed_values(table: str) -> tuple[str, ...]:
    """What a ``values:`` map of ``table`` may map to (``-``: reported, not used)."""
    from abm_ml.data.roles import ROLES

    targets = {
        "opportunities": ("won", "lost", "open"),
        "activities": (*CHANNELS, "-"),
        "contacts": (*ROLES, "-"),
        "contact_roles": (*ROLES, "-"),
    }
    return targets.get(table, ())


@dataclass(frozen=True)
class ObjectPreset:
    """How one CRM object's export maps to one of abm-ml's tables.

    Attributes:
        table: The abm-ml table it feeds (a key of :data:`TABLE_COLUMNS`).
        file: The file name the CRM's export tool writes.
        columns: abm-ml column -> export field.
        values: Export value -> abm-ml value: stage -> won/lost/open, activity type -> channel,
            role picklist value -> buying-committee role (``"*"`` matches any other value,
            ``"-"`` means "not an abm-ml value": the row is reported, not used).
        channel: For activity objects whose every row is one channel (Salesforce Event).
    """

    table: str
    file: str
    columns: Mapping[str, str]
    values: Mapping[str, str] = field(default_factory=dict)
    channel: str | None = None


_SALESFORCE_ROLES = {
    "Economic Buyer": "economic_buyer",
    "Economic Decision Maker": "economic_buyer",
    "Decision Maker": "economic_buyer",
    "Executive Sponsor": "champion",
    "Champion": "champion",
    "Influencer": "influencer",
    "Evaluator": "influencer",
    "Technical Buyer": "stakeholder",
    "Stakeholder": "stakeholder",
    "Procurement": "procurement",
    "Business User": "end_user",
    "Other": "-",
}

SALESFORCE: Mapping[str, ObjectPreset] = MappingProxyType(
    {
        "Account": ObjectPreset(
            table="accounts",
            file="Account.csv",
            columns={
                "account_id": "Id",
                "industry": "Industry",
                "region": "BillingCountry",
                "employees": "NumberOfEmployees",
                "annual_revenue": "AnnualRevenue",
                "owner": "OwnerId",
                "parent_account_id": "ParentId",
                "founded_year": "YearStarted",
            },
        ),
        "Contact": ObjectPreset(
            table="contacts",
            file="Contact.csv",
            columns={
                "contact_id": "Id",
                "account_id": "AccountId",
                "title": "Title",
                "created_at": "CreatedDate",
            },
        ),
        "Opportunity": ObjectPreset(
            table="opportunities",
            file="Opportunity.csv",
            columns={
                "opportunity_id": "Id",
                "account_id": "AccountId",
                "created_at": "CreatedDate",
                "closed_at": "CloseDate",
                "stage": "StageName",
                "is_closed": "IsClosed",
                "is_won": "IsWon",
                "amount": "Amount",
                "source": "LeadSource",
            },
        ),
        "OpportunityContactRole": ObjectPreset(
            table="contact_roles",
            file="OpportunityContactRole.csv",
            columns={
                "opportunity_id": "OpportunityId",
                "contact_id": "ContactId",
                "role": "Role",
                "created_at": "CreatedDate",
            },
            values=_SALESFORCE_ROLES,
        ),
        "Task": ObjectPreset(
            table="activities",
            file="Task.csv",
            columns={
                "account_id": "AccountId",
                "contact_id": "WhoId",
                "occurred_at": "CreatedDate",
                "type": "Type",
            },
            # Meetings are logged by reps; the others by the marketing-automation sync
            # (Pardot, HubSpot or Marketo write these Task types into Salesforce).
            values={
                "Meeting": "sales_meeting",
                "Email Open": "email_open",
                "Email Click": "email_click",
                "Content Download": "content_download",
                "Webinar": "webinar_attended",
                "Event": "event_attended",
                "Video Completion": "video_completion",
                "Ad Impression": "paid_impression",
                "Web Visit": "web_visit",
            },
        ),
        "Event": ObjectPreset(
            table="activities",
            file="Event.csv",
            columns={
                "account_id": "AccountId",
                "contact_id": "WhoId",
                "occurred_at": "StartDateTime",
            },
            channel="sales_meeting",
        ),
        "CampaignMember": ObjectPreset(
            table="activities",
            file="CampaignMember.csv",
            columns={
                "contact_id": "ContactId",
                # Kept on the activity so `abm-ml roi --spec` can count the campaign's touches.
                "campaign_id": "CampaignId",
                "occurred_at": "FirstRespondedDate",
                "type": "Campaign.Type",
            },
            values={
                "Webinar": "webinar_attended",
                "Conference": "event_attended",
                "Trade Show": "event_attended",
                "Event": "event_attended",
                "Advertisement": "paid_impression",
                "Email": "email_click",
                "Content": "content_download",
                "Video": "video_completion",
            },
        ),
    }
)
"""Salesforce standard objects as Data Loader / Data Export writes them (API field names)."""

_HUBSPOT_ROLES = {
    "BUDGET_HOLDER": "economic_buyer",
    "DECISION_MAKER": "economic_buyer",
    "EXECUTIVE_SPONSOR": "champion",
    "CHAMPION": "champion",
    "INFLUENCER": "influencer",
    "BLOCKER": "stakeholder",
    "LEGAL_AND_COMPLIANCE": "procurement",
    "END_USER": "end_user",
    "OTHER": "-",
}

HUBSPOT: Mapping[str, ObjectPreset] = MappingProxyType(
    {
        "companies": ObjectPreset(
            table="accounts",
            file="companies.csv",
            columns={
                "account_id": "hs_object_id",
                "industry": "industry",
                "region": "country",
                "employees": "numberofemployees",
                "annual_revenue": "annualrevenue",
                "owner": "hubspot_owner_id",
                "parent_account_id": "hs_parent_company_id",
                "founded_year": "founded_year",
            },
        ),
        "contacts": ObjectPreset(
            table="contacts",
            file="contacts.csv",
            columns={
                "contact_id": "hs_object_id",
                "account_id": "associatedcompanyid",
                "title": "jobtitle",
                "role": "hs_buying_role",
                "created_at": "createdate",
            },
            values=_HUBSPOT_ROLES,
        ),
        "deals": ObjectPreset(
            table="opportunities",
            file="deals.csv",
            columns={
                "opportunity_id": "hs_object_id",
                "account_id": "associatedcompanyid",
                "created_at": "createdate",
                "closed_at": "closedate",
                "stage": "dealstage",
                "amount": "amount",
                "source": "hs_analytics_source",
            },
            # The default sales pipeline; custom pipelines override `values`.
            values={"closedwon": "won", "closedlost": "lost", "*": "open"},
        ),
        "engagements": ObjectPreset(
            table="activities",
            file="engagements.csv",
            columns={
                "account_id": "associatedcompanyid",
                "contact_id": "associatedcontactid",
                "occurred_at": "hs_timestamp",
                "type": "hs_engagement_type",
            },
            values={
                "MEETING": "sales_meeting",
                "EMAIL_OPEN": "email_open",
                "EMAIL_CLICK": "email_click",
                "FORM_SUBMISSION": "content_download",
                "WEBINAR": "webinar_attended",
                "EVENT": "event_attended",
                "AD_IMPRESSION": "paid_impression",
                "VIDEO_COMPLETION": "video_completion",
                "PAGE_VIEW": "web_visit",
            },
        ),
    }
)
"""HubSpot CRM objects as their API / warehouse sync names the properties."""

PRESETS: Mapping[str, Mapping[str, ObjectPreset]] = MappingProxyType(
    {"salesforce": SALESFORCE, "hubspot": HUBSPOT}
)

DEFAULT_OBJECTS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "salesforce": {
            "accounts": "Account",
            "contacts": "Contact",
            "opportunities": "Opportunity",
            "contact_roles": "OpportunityContactRole",
        },
        "hubspot": {"accounts": "companies", "contacts": "contacts", "opportunities": "deals"},
    }
)
"""The object each fixed table reads by default under a preset."""


def object_preset(preset: str | None, table: str, obj: str | None) -> ObjectPreset | None:
    """The preset mapping of one table (``obj`` names the object, e.g. ``Task``), if any.

    Args:
        preset: ``salesforce``, ``hubspot`` or ``None`` (no preset: abm-ml's own names).
        table: The abm-ml table (``accounts``, ``activities``...).
        obj: The CRM object named in the spec; the preset's default object when ``None``.

    Returns:
        The object's mapping, or ``None`` when the preset has none for this table.

    Raises:
        KeyError: ``obj`` is not an object of ``preset`` or feeds another table.
    """
    if preset is None:
        return None
    objects = PRESETS[preset]
    name = obj or DEFAULT_OBJECTS[preset].get(table)
    if name is None:
        return None
    if name not in objects:
        raise KeyError(f"{preset} has no object {name!r} (known: {', '.join(objects)})")
    found = objects[name]
    if found.table != table:
        raise KeyError(f"{preset} object {name!r} feeds `{found.table}`, not `{table}`")
    return found
