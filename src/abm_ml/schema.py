"""Canonical column names shared by every stage.

Every loader (CSV export, SQL table, synthetic world) produces a frame with these columns
next to the feature columns, so training, scoring and reporting never see a source's own names.
"""

from __future__ import annotations

ROW_ID = "row_id"
"""Unique id of one input row (an opportunity, a lead, a call)."""
ACCOUNT_ID = "account_id"
"""Groups rows of one account; equals ``row_id`` when a dataset has no accounts."""
OUTCOME = "outcome"
"""One of :data:`WON`, :data:`LOST`, :data:`OPEN`."""
CREATED_AT = "created_at"
CLOSED_AT = "closed_at"
DAYS_TO_CLOSE = "days_to_close"
AMOUNT = "amount"

WON, LOST, OPEN = "won", "lost", "open"
OUTCOMES = (WON, LOST, OPEN)

CANONICAL_COLUMNS = (ROW_ID, ACCOUNT_ID, OUTCOME, CREATED_AT, CLOSED_AT, DAYS_TO_CLOSE, AMOUNT)
