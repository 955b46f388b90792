"""The reference of bench/bench_service.py: a bare Starlette endpoint under uvicorn.

``POST /score`` reads the body, parses it as JSON (the same requests abm-ml gets) and answers a
constant JSON body; ``GET /readyz`` answers 200. It is what any Python web service on this
machine costs before it does any work: the framework overhead that abm-ml's served figures are
divided by. Started by the benchmark as
``python -m uvicorn bare_server:app --app-dir bench --workers N``.
"""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ANSWER = json.dumps({"count": 1, "results": [{"account_id": "a", "propensity": 0.5}]}).encode()


async def score(request: Request) -> Response:
    payload = json.loads(await request.body())
    if not isinstance(payload, dict) or "records" not in payload:
        return Response(b'{"error":"records"}', status_code=422, media_type="application/json")
    return Response(ANSWER, media_type="application/json")


async def ready(request: Request) -> Response:
    return Response(b"ok")


app = Starlette(routes=[Route("/score", score, methods=["POST"]), Route("/readyz", ready)])
