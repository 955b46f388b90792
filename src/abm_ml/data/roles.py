"""Buying-committee roles and the rules that read them from job titles.

A CRM rarely stores a contact's role in the buying committee: Salesforce keeps it per deal
(OpportunityContactRole), HubSpot in an optional ``hs_buying_role``, many teams only in the
job title. :func:`roles_from_titles` applies ordered ``regex -> role`` rules (the first match
wins) so "VP Finance" counts as an economic buyer and "Procurement Manager" as procurement; a
spec can replace the shipped :data:`DEFAULT_ROLE_RULES` (``tables.role_rules``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

ROLES = ("economic_buyer", "champion", "influencer", "stakeholder", "procurement", "end_user")
"""The buying-committee roles the features count, in a fixed order."""

DEFAULT_ROLE_RULES: tuple[tuple[str, str], ...] = (
    # Order matters: "Procurement Manager" is procurement before "manager" makes it an influencer,
    # "Chief Security Officer" an economic buyer before "officer" makes it a stakeholder.
    (r"procure|purchas|vendor|sourcing|supply chain", "procurement"),
    (
        (
            r"\bc[efmrio]o\b|\bcto\b|chief|president|\bvp\b|vice president|\b[se]vp\b|owner|founder"
            r"|managing director|general manager"
        ),
        "economic_buyer",
    ),
    (
        (
            r"marketing op|demand gen|rev ?ops|revenue op|\babm\b|account[- ]based|growth"
            r"|marketing automation"
        ),
        "champion",
    ),
    (
        (
            r"\b[sb]dr\b|account executive|\bae\b|specialist|coordinator|representative"
            r"|campaign manager|associate|assistant"
        ),
        "end_user",
    ),
    (r"manager|analyst|architect|engineer|consultant|\blead\b", "influencer"),
    (r"director|head\b|officer|security|legal|counsel|compliance", "stakeholder"),
)
"""Shipped title rules (case-insensitive), tried in order; the first match gives the role."""


def roles_from_titles(
    titles: pd.Series, rules: Sequence[tuple[str, str]] = DEFAULT_ROLE_RULES
) -> pd.Series:
    """Map job titles to buying-committee roles with the first matching rule.

    Args:
        titles: Job titles (missing values allowed).
        rules: ``(regex, role)`` pairs, matched case-insensitively anywhere in the title.

    Returns:
        The role of each title, missing where no rule matches or the title is missing.
    """
    compiled = [(re.compile(pattern, re.IGNORECASE), role) for pattern, role in rules]

    def _role(title: object) -> object:
        if not isinstance(title, str):
            return None
        for pattern, role in compiled:
            if pattern.search(title):
                return role
        return None

    # Titles repeat a lot: match each distinct one once.
    codes, uniques = pd.factorize(titles.astype(object), use_na_sentinel=True)
    mapped = np.array([_role(u) for u in uniques] + [None], dtype=object)
    return pd.Series(mapped[codes], index=titles.index, dtype=object)
