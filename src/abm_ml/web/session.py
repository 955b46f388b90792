"""Sign-in for the pages: a signed, HttpOnly, SameSite=Strict cookie, and CSRF tokens for forms.

With ``ABM_ML_API_TOKEN`` set, the pages need the same token as the API: a person types it once
into the sign-in form and gets a session cookie signed with a key derived from the token
(itsdangerous, HMAC-SHA1 over the payload and a timestamp). Changing the token therefore signs
every session out. The cookie is ``HttpOnly`` (scripts cannot read it), ``SameSite=Strict``
(other sites' pages cannot send it) and ``Secure`` when the page is served over HTTPS.

Forms that change state (sign in, sign out) carry a CSRF token: the session's own token after
sign-in, a signed pre-session cookie's value before it (double submit). Filters and downloads
are GET requests that change nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

SESSION_COOKIE = "abm_ml_session"
LOGIN_CSRF_COOKIE = "abm_ml_login_csrf"
SESSION_MAX_AGE_S = 12 * 3600
"""A working day: a forgotten browser does not stay signed in for ever."""
LOGIN_MAX_AGE_S = 3600


@dataclass(frozen=True)
class Session:
    """A signed-in browser: its CSRF token."""

    csrf: str


class SessionSigner:
    """Signs and checks session and login cookies with a key derived from the API token.

    Args:
        token: ``ABM_ML_API_TOKEN``; None or empty turns sign-in off (every page is open).
    """

    def __init__(self, token: str | None):
        self.token = token or None
        self._token = token.encode() if token else None
        key = (
            hmac.new(self._token, b"abm-ml web session", hashlib.sha256).hexdigest()
            if self._token
            else "unused"
        )
        self._session = URLSafeTimedSerializer(key, salt="abm-ml-session")
        self._login = URLSafeTimedSerializer(key, salt="abm-ml-login")

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def token_matches(self, typed: str) -> bool:
        """Whether the typed token is the API token (constant-time comparison)."""
        if self._token is None:
            return True
        return hmac.compare_digest(typed.strip().encode(), self._token)

    def bearer_matches(self, header: str | None) -> bool:
        """Whether an ``Authorization: Bearer`` header carries the token (scripts, curl)."""
        if self._token is None or not header:
            return False
        scheme, _, credentials = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), self._token
        )

    def new_session(self) -> tuple[Session, str]:
        """A fresh session and its cookie value."""
        session = Session(csrf=secrets.token_urlsafe(24))
        return session, self._session.dumps({"csrf": session.csrf})

    def read_session(self, cookie: str | None) -> Session | None:
        """The session of a cookie, or None when missing, forged, or older than 12 hours."""
        if not cookie or self._token is None:
            return None
        try:
            payload = self._session.loads(cookie, max_age=SESSION_MAX_AGE_S)
        except BadSignature:  # also SignatureExpired, its subclass
            return None
        csrf = payload.get("csrf") if isinstance(payload, dict) else None
        return Session(csrf=csrf) if isinstance(csrf, str) and csrf else None

    def new_login_csrf(self) -> tuple[str, str]:
        """A CSRF token for the sign-in form and the signed cookie that carries it."""
        value = secrets.token_urlsafe(24)
        return value, self._login.dumps(value)

    def login_csrf_matches(self, cookie: str | None, submitted: str) -> bool:
        """Whether the form's CSRF token is the one the signed login cookie carries."""
        if not cookie or not submitted:
            return False
        try:
            value = self._login.loads(cookie, max_age=LOGIN_MAX_AGE_S)
        except BadSignature:
            return False
        return isinstance(value, str) and hmac.compare_digest(value, submitted)


def csrf_matches(session: Session | None, submitted: str) -> bool:
    """Whether a form's CSRF token is the session's."""
    return bool(session and submitted) and hmac.compare_digest(session.csrf, submitted)
