"""The reference of bench/bench_service.py: a bare Starlette endpoint under uvicorn.

``POST /score`` reads the body, parses it as JSON (the same requests abm-ml gets) and answers a
constant JSON body; ``GET /readyz`` answers 200. It is what any Python web service on this
machine costs before it does any work: the framework overhead that abm-ml's served figures are
divided by. Started by the benchmark as ``python bench/bare_server.py PORT WORKERS``: WORKERS
uvicorn processes, each on its own SO_REUSEPORT socket with TCP_NODELAY (uvicorn's own
``--workers`` mode stalled every loopback request ~40 ms here, which would flatter abm-ml).
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


def _serve(port: int) -> None:
    import socket

    import uvicorn

    # Each worker binds its own listening socket (SO_REUSEPORT: the kernel spreads
    # connections). TCP_NODELAY, inherited by accepted sockets: without it a pre-bound
    # socket's answers met the client's delayed ACK, ~40 ms per request on loopback.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    import multiprocessing
    import sys

    port, workers = int(sys.argv[1]), int(sys.argv[2])
    processes = [multiprocessing.Process(target=_serve, args=(port,)) for _ in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
