"""Access to the service: an optional bearer token (``ABM_ML_API_TOKEN``) on every path but ``/healthz``."""

from __future__ import annotations

import hmac
import os
from typing import Any

from abm_ml.service.responses import dump, error_response
from abm_ml.service.settings import ENV_API_TOKEN
from abm_ml.web.paths import is_page_path


class BearerAuthMiddleware:
    """ASGI middleware: with ``ABM_ML_API_TOKEN`` set, every path but ``/healthz`` needs the token.

    The token is compared in constant time and never logged; a missing or wrong token gets 401
    with the service's error body.

    Args:
        app: the ASGI app to protect.
        token: the token; ``None`` reads ``ABM_ML_API_TOKEN``; empty turns the check off.
    """

    OPEN_PATHS = frozenset({"/healthz"})

    def __init__(self, app: Any, token: str | None = None):
        self.app = app
        token = token if token is not None else os.environ.get(ENV_API_TOKEN)
        self._token = token.encode() if token else None

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def authorized(self, header: bytes | None) -> bool:
        """Whether an ``Authorization`` header value carries the token (always, when disabled)."""
        if self._token is None:
            return True
        if not header:
            return False
        scheme, _, credentials = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(credentials.strip(), self._token)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if (
            self._token is None
            or scope.get("type") != "http"
            or scope.get("path") in self.OPEN_PATHS
            # The pages (abm_ml.web) check their own signed session cookie and sign-in form.
            or is_page_path(scope.get("path") or "")
        ):
            await self.app(scope, receive, send)
            return
        header = next(
            (value for key, value in scope.get("headers") or () if key == b"authorization"), None
        )
        if self.authorized(header):
            await self.app(scope, receive, send)
            return
        body = dump(error_response("missing or invalid bearer token"))
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="abm-ml"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
