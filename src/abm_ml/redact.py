"""Keeping URL credentials out of messages, logs and artifacts.

A SQLAlchemy or tracking URL may carry a password (``postgresql://ann:s3cret@db/crm``). Any
text that leaves the process (an error message, an MLflow param, tag or artifact, a report)
goes through :func:`mask_credentials` first.
"""

from __future__ import annotations

import re

_CREDENTIALS = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s'\"]*):(?P<password>[^@\s'\"]*)@"
)
_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")  # no :-default: it may be a literal


def mask_credentials(text: str) -> str:
    """``scheme://user:password@host`` becomes ``scheme://user:***@host`` anywhere in ``text``.

    Example:
        >>> mask_credentials("cannot connect to postgresql://ann:s3cret@db:5432/crm")
        'cannot connect to postgresql://ann:***@db:5432/crm'
        >>> mask_credentials("postgresql://ann:${DB_PASSWORD}@db/crm")
        'postgresql://ann:${DB_PASSWORD}@db/crm'
    """

    def _mask(match: re.Match[str]) -> str:
        # A ${VAR} reference (a spec as written) names the secret without holding it.
        if _REFERENCE.fullmatch(match.group("password")):
            return match.group(0)
        return f"{match.group('head')}:***@"

    return _CREDENTIALS.sub(_mask, str(text))
