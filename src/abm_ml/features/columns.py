"""What the point-in-time features are: their names, their order and how reasons describe them.

:data:`FEATURE_COLUMNS` is the order :func:`~abm_ml.features.point_in_time.build_features` adds
them in; :data:`FEATURE_DESCRIPTIONS` gives each a description, a type and the template (or
yes/no texts) that turn its value into a reason a sales rep can read.
"""

from __future__ import annotations

from abm_ml.schema import AMOUNT

AS_OF = "as_of"
SOURCE = "source"

# (feature name, channel or None for every channel, window in days)
WINDOW_COUNTS = (
    ("web_visits_7d", "web_visit", 7),
    ("web_visits_30d", "web_visit", 30),
    ("web_visits_90d", "web_visit", 90),
    ("email_opens_30d", "email_open", 30),
    ("email_clicks_30d", "email_click", 30),
    ("email_clicks_90d", "email_click", 90),
    ("content_downloads_90d", "content_download", 90),
    ("paid_impressions_30d", "paid_impression", 30),
    ("video_completions_90d", "video_completion", 90),
    ("events_attended_90d", "event_attended", 90),
    ("webinars_attended_90d", "webinar_attended", 90),
    ("sales_meetings_30d", "sales_meeting", 30),
    ("sales_meetings_90d", "sales_meeting", 90),
    ("touches_7d", None, 7),
    ("touches_30d", None, 30),
    ("touches_90d", None, 90),
)
CATEGORICAL = ("industry", "region", "segment", "tech_stack")
FIRMOGRAPHIC_NUMERIC = ("employees", "annual_revenue")
FIRMOGRAPHIC_BOOL = ("uses_competitor", "owner_assigned")
NOISE = ("founded_year", "fiscal_year_end_month", "crm_data_quality")

FEATURE_COLUMNS: tuple[str, ...] = (
    *(name for name, _, _ in WINDOW_COUNTS),
    "web_pages_30d",
    "total_touches",
    "days_since_last_touch",
    "contacts_in_crm",
    "has_economic_buyer",
    "has_champion",
    "has_procurement",
    "committee_roles_covered",
    "economic_buyer_engaged_90d",
    "champion_engaged_90d",
    "procurement_engaged_90d",
    "committee_roles_engaged_90d",
    "intent_score_latest",
    "intent_score_avg_4w",
    "intent_trend_4w",
    "intent_topics_active_4w",
    *CATEGORICAL,
    *FIRMOGRAPHIC_NUMERIC,
    *FIRMOGRAPHIC_BOOL,
    "has_parent",
    "prior_won_deals",
    "prior_lost_deals",
    *NOISE,
)
"""Columns :func:`build_features` adds, in order."""

DEAL_FEATURES: tuple[str, ...] = (AMOUNT, SOURCE)
"""Attributes of the deal itself, known at creation and carried on training/scoring rows."""

MODEL_FEATURES: tuple[str, ...] = (*DEAL_FEATURES, *FEATURE_COLUMNS)
"""Every column a model may use: the deal attributes plus the account features."""


def _num(description: str, template: str) -> dict:
    return {"description": description, "template": template, "type": "numeric"}


def _flag(description: str, true_text: str, false_text: str) -> dict:
    return {
        "description": description,
        "type": "boolean",
        "true_text": true_text,
        "false_text": false_text,
    }


def _cat(description: str, template: str) -> dict:
    return {"description": description, "template": template, "type": "categorical"}


FEATURE_DESCRIPTIONS: dict[str, dict] = {
    AMOUNT: _num("expected deal size", "Deal size {value:,.0f}"),
    SOURCE: _cat("where the opportunity came from", "Opportunity source: {value}"),
    "web_visits_7d": _num(
        "web visits in the last 7 days", "{value:.0f} web visits in the last 7 days"
    ),
    "web_visits_30d": _num(
        "web visits in the last 30 days", "{value:.0f} web visits in the last 30 days"
    ),
    "web_visits_90d": _num(
        "web visits in the last 90 days", "{value:.0f} web visits in the last 90 days"
    ),
    "email_opens_30d": _num(
        "email opens in the last 30 days", "{value:.0f} email opens in the last 30 days"
    ),
    "email_clicks_30d": _num(
        "email clicks in the last 30 days", "{value:.0f} email clicks in the last 30 days"
    ),
    "email_clicks_90d": _num(
        "email clicks in the last 90 days", "{value:.0f} email clicks in the last 90 days"
    ),
    "content_downloads_90d": _num(
        "content downloads in the last 90 days", "{value:.0f} content downloads in the last 90 days"
    ),
    "paid_impressions_30d": _num(
        "paid ad impressions in the last 30 days", "{value:.0f} ad impressions in the last 30 days"
    ),
    "video_completions_90d": _num(
        "videos watched to the end in the last 90 days",
        "{value:.0f} videos watched to the end in the last 90 days",
    ),
    "events_attended_90d": _num(
        "events attended in the last 90 days", "{value:.0f} events attended in the last 90 days"
    ),
    "webinars_attended_90d": _num(
        "webinars attended in the last 90 days", "{value:.0f} webinars attended in the last 90 days"
    ),
    "sales_meetings_30d": _num(
        "sales meetings in the last 30 days", "{value:.0f} sales meetings in the last 30 days"
    ),
    "sales_meetings_90d": _num(
        "sales meetings in the last 90 days", "{value:.0f} sales meetings in the last 90 days"
    ),
    "touches_7d": _num("touches of any kind in the last 7 days", "{value:.0f} touches this week"),
    "touches_30d": _num(
        "touches of any kind in the last 30 days", "{value:.0f} touches in the last 30 days"
    ),
    "touches_90d": _num(
        "touches of any kind in the last 90 days", "{value:.0f} touches in the last 90 days"
    ),
    "web_pages_30d": _num(
        "web pages viewed in the last 30 days", "{value:.0f} web pages viewed in the last 30 days"
    ),
    "total_touches": _num("touches of any kind on record", "{value:.0f} touches on record"),
    "days_since_last_touch": _num(
        "days since the last touch (empty when never touched)",
        "Last touch {value:.0f} days ago",
    ),
    "contacts_in_crm": _num("contacts in the CRM", "{value:.0f} contacts in the CRM"),
    "has_economic_buyer": _flag(
        "economic buyer in CRM", "Economic buyer in CRM", "No economic buyer in CRM"
    ),
    "has_champion": _flag("champion in CRM", "Champion in CRM", "No champion in CRM"),
    "has_procurement": _flag(
        "procurement contact in CRM", "Procurement contact in CRM", "No procurement contact in CRM"
    ),
    "committee_roles_covered": _num(
        "buying-committee roles with a contact in the CRM (0-6)",
        "{value:.0f} of 6 buying-committee roles in the CRM",
    ),
    "economic_buyer_engaged_90d": _flag(
        "economic buyer engaged in the last 90 days",
        "Economic buyer engaged in the last 90 days",
        "Economic buyer not engaged in the last 90 days",
    ),
    "champion_engaged_90d": _flag(
        "champion engaged in the last 90 days",
        "Champion engaged in the last 90 days",
        "Champion not engaged in the last 90 days",
    ),
    "procurement_engaged_90d": _flag(
        "procurement engaged in the last 90 days",
        "Procurement engaged in the last 90 days",
        "Procurement not engaged in the last 90 days",
    ),
    "committee_roles_engaged_90d": _num(
        "buying-committee roles engaged in the last 90 days (0-6)",
        "{value:.0f} of 6 buying-committee roles engaged in the last 90 days",
    ),
    "intent_score_latest": _num(
        "highest third-party intent score over topics in the last complete week (0-100)",
        "Intent score {value:.0f}/100 last week",
    ),
    "intent_score_avg_4w": _num(
        "average of the weekly highest intent score over the last 4 complete weeks",
        "Average intent score {value:.0f}/100 over 4 weeks",
    ),
    "intent_trend_4w": _num(
        "slope of the weekly highest intent score over the last 4 complete weeks (points/week)",
        "Intent moving {value:+.1f} points a week over the last 4 weeks",
    ),
    "intent_topics_active_4w": _num(
        "intent topics reported in the last 4 complete weeks",
        "Researching {value:.0f} relevant topics",
    ),
    "industry": _cat("industry", "Industry: {value}"),
    "region": _cat("region", "Region: {value}"),
    "segment": _cat("segment by employee count", "Segment: {value}"),
    "tech_stack": _cat("where their systems run", "Tech stack: {value}"),
    "employees": _num("employees", "{value:,.0f} employees"),
    "annual_revenue": _num("annual revenue", "Annual revenue {value:,.0f}"),
    "uses_competitor": _flag(
        "a competitor's product is in use", "Uses a competitor's product", "No competitor in use"
    ),
    "owner_assigned": _flag(
        "an account owner is assigned", "Account owner assigned", "No account owner"
    ),
    "has_parent": _flag(
        "subsidiary of another account", "Part of a larger group", "Stand-alone company"
    ),
    "prior_won_deals": _num(
        "deals won with this account before", "{value:.0f} deals won with this account before"
    ),
    "prior_lost_deals": _num(
        "deals lost with this account before", "{value:.0f} deals lost with this account before"
    ),
    "founded_year": _num("year the company was founded", "Founded in {value:.0f}"),
    "fiscal_year_end_month": _num(
        "month their fiscal year ends", "Fiscal year ends in month {value:.0f}"
    ),
    "crm_data_quality": _num(
        "completeness score of the CRM record (0-1)", "CRM record {value:.0%} complete"
    ),
}


def default_feature_specs() -> list[dict]:
    """The spec's ``features:`` entries for every model feature, as ``synthetic-abm.yaml`` lists them.

    A multi-table spec without a ``features:`` list gets these: the rows it builds carry exactly
    these columns.
    """
    out = []
    for name in MODEL_FEATURES:
        entry = {"column": name}
        if name == AMOUNT:
            entry["name"] = "deal_amount"  # `amount` is a reserved column name
        entry.update(FEATURE_DESCRIPTIONS[name])
        out.append(entry)
    return out
