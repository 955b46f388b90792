"""Buying-committee coverage on the account page, from the model inputs stored with the run.

The committee features are the ones :mod:`abm_ml.features.columns` builds per buying-committee
role (:data:`abm_ml.data.roles.ROLES`) and the role counts beside them; their descriptions and
reason texts come from :data:`~abm_ml.features.columns.FEATURE_DESCRIPTIONS`. A model trained
without them (another CRM export's own columns) simply has no committee section.
"""

from __future__ import annotations

import json
import math
from typing import Any

from abm_ml.data.roles import ROLES
from abm_ml.features.columns import FEATURE_COLUMNS, FEATURE_DESCRIPTIONS

COMMITTEE_PREFIX = "committee_"
"""The role-count features' prefix in :data:`FEATURE_COLUMNS`."""

COMMITTEE_FEATURES: tuple[str, ...] = tuple(
    name
    for name in FEATURE_COLUMNS
    if name.startswith(COMMITTEE_PREFIX) or any(role in name for role in ROLES)
)
"""Committee features in the builder's order: per-role presence and engagement, role counts."""


def _text(name: str, value: Any) -> str | None:
    """The feature's reason text for ``value`` (None when the value is missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    spec = FEATURE_DESCRIPTIONS.get(name, {})
    if spec.get("type") == "boolean":
        truthy = str(value).strip().lower() in {"1", "1.0", "true", "yes"}
        return spec["true_text"] if truthy else spec["false_text"]
    try:
        return spec["template"].format(value=float(value))
    except (KeyError, ValueError, TypeError):
        return f"{spec.get('description', name)}: {value}"


def committee_coverage(inputs_json: str | None) -> list[dict[str, Any]]:
    """The account's committee features the run stored, in the builder's order.

    Returns:
        ``{"feature", "description", "value", "shown", "text", "engaged"}`` per committee feature the
        model saw (empty when the run stored no inputs or the model has none of them);
        ``engaged`` is True/False for yes/no features, None for counts.
    """
    if not inputs_json:
        return []
    try:
        values = json.loads(inputs_json)
    except ValueError:
        return []
    rows = []
    for name in COMMITTEE_FEATURES:
        if name not in values:
            continue
        value = values[name]
        text = _text(name, value)
        spec = FEATURE_DESCRIPTIONS.get(name, {})
        is_flag = spec.get("type") == "boolean" and text is not None
        engaged = (text == spec.get("true_text")) if is_flag else None
        if value is None:
            shown = "missing"
        elif engaged is not None:
            shown = "yes" if engaged else "no"
        else:
            shown = f"{value:g}" if isinstance(value, int | float) else str(value)
        rows.append(
            {
                "feature": name,
                "description": spec.get("description", name),
                "value": value,
                "shown": shown,
                "text": text if text is not None else f"{spec.get('description', name)}: unknown",
                "engaged": engaged,
            }
        )
    return rows
