"""The body limit, enforced while the body arrives: a request never holds more than the limit.

:class:`BodyLimitMiddleware` answers 413 on a ``Content-Length`` over ``ABM_ML_MAX_BODY_BYTES``
before reading a byte, and stops reading a chunked body as soon as it passes the limit. It sits
inside :class:`~abm_ml.service.auth.BearerAuthMiddleware`, so the body of a request without
the token is not read at all.
"""

from __future__ import annotations

from typing import Any

from abm_ml.service.responses import dump, error_response
from abm_ml.service.settings import ENV_MAX_BODY_BYTES, Settings


async def send_error(send: Any, status: int, message: str, *, close: bool = False) -> None:
    """Send one error answer in the service's documented shape (:func:`error_response`).

    Args:
        close: ask the server to close the connection (the rest of the body was never read).
    """
    body = dump(error_response(message))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """ASGI middleware: read at most ``max_body_bytes`` of a request body, else answer 413.

    The app behind it receives the whole body in one message, already read and within the limit.

    Args:
        app: the ASGI app to protect.
        max_body_bytes: the limit; ``None`` reads ``ABM_ML_MAX_BODY_BYTES`` (16 MiB by default).
    """

    def __init__(self, app: Any, max_body_bytes: int | None = None):
        self.app = app
        self.max_body_bytes = (
            max_body_bytes if max_body_bytes is not None else Settings.from_env().max_body_bytes
        )

    def _too_large(self, size: str) -> str:
        return (
            f"request body of {size} bytes is over the limit of {self.max_body_bytes} "
            f"({ENV_MAX_BODY_BYTES})"
        )

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        declared = next(
            (value for key, value in scope.get("headers") or () if key == b"content-length"), None
        )
        if declared is not None:
            if not declared.strip().isdigit():
                await send_error(send, 400, "invalid Content-Length header", close=True)
                return
            if int(declared) > self.max_body_bytes:
                await send_error(send, 413, self._too_large(declared.decode()), close=True)
                return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nobody to answer
                return
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                await send_error(send, 413, self._too_large(f"more than {len(body)}"), close=True)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(bytes(body), receive), send)


def _replay(body: bytes, receive: Any) -> Any:
    """A ``receive`` that gives the body already read, then defers to the server's."""
    pending = True

    async def replay() -> dict[str, Any]:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
