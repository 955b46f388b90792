"""The paths the pages answer, for the API's bearer-token middleware (no heavy imports here).

These paths check their own signed session cookie (a browser cannot send a bearer header), so
:class:`abm_ml.service.auth.BearerAuthMiddleware` lets them through to the pages' own sign-in.
"""

from __future__ import annotations

EXACT_PATHS = frozenset({"/", "/accounts.csv", "/model", "/login", "/logout"})
PREFIXES = ("/accounts/", "/model/report/", "/static/")


def is_page_path(path: str) -> bool:
    """Whether ``path`` belongs to the pages (which guard themselves) rather than the API."""
    return path in EXACT_PATHS or path.startswith(PREFIXES)
