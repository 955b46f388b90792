"""Reliability of the service: no 500 on bad input, no body read past its limit, no hang and
no crash loop on a model that cannot be read.

Each test here is the regression test of a defect once seen: JSON nested 1,000 deep and a lone
surrogate answered 500, ``1e400`` came back as ``null``, a 400 MB body was read whole before its
413, and a corrupt ``scorer.joblib`` left ``/readyz`` hanging while ``/healthz`` said 200.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from abm_ml.errors import AbmInputError
from abm_ml.service import deploy as deployment_
from abm_ml.service import launch
from abm_ml.service.auth import BearerAuthMiddleware
from abm_ml.service.limits import BodyLimitMiddleware
from abm_ml.service.responses import ErrorResponse
from abm_ml.testing import asgi_client, free_port, start_server, stop_server

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`"),
]

TOKEN = "tok-7c1d-secret"


def assert_error_shape(resp, status: int) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    ErrorResponse.model_validate(body)
    return body


# -- the body limit, as an ASGI middleware -----------------------------------------------------


def call_asgi(app, chunks: list[bytes], headers: dict[str, str]) -> tuple[int, dict, int]:
    """Run one request through an ASGI app; (status, JSON body, body messages it read)."""
    reads = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal reads
        if reads >= len(chunks):
            await asyncio.sleep(3600)  # a client that still sends: only a reader that stops ends
        reads += 1
        return {"type": "http.request", "body": chunks[reads - 1], "more_body": reads < len(chunks)}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/score",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 10))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body), reads


async def echo_app(scope, receive, send) -> None:
    """An app that reads its whole body and answers its size."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    payload = json.dumps({"size": len(body)}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": payload})


def test_declared_length_over_the_limit_is_refused_before_reading():
    app = BodyLimitMiddleware(echo_app, max_body_bytes=100)
    status, body, reads = call_asgi(app, [b"x" * 400] * 1000, {"content-length": "400000"})
    assert (status, reads) == (413, 0)
    assert "400000" in body["error"] and "ABM_ML_MAX_BODY_BYTES" in body["error"]
    assert call_asgi(app, [b"x"], {"content-length": "-1"})[0] == 400


def test_chunked_body_stops_being_read_past_the_limit():
    app = BodyLimitMiddleware(echo_app, max_body_bytes=100)
    status, body, reads = call_asgi(app, [b"x" * 40] * 1000, {})
    assert (status, reads) == (413, 3)  # 120 bytes read of 40,000: the rest never is
    ErrorResponse.model_validate(body)
    assert call_asgi(app, [b"x" * 40, b"x" * 60], {}) == (200, {"size": 100}, 2)


def test_unauthenticated_bodies_are_not_read():
    app = BearerAuthMiddleware(BodyLimitMiddleware(echo_app, max_body_bytes=100), token=TOKEN)
    for headers in ({"content-length": "400000"}, {}):
        status, _, reads = call_asgi(app, [b"x" * 400] * 1000, headers)
        assert (status, reads) == (401, 0)
    good = {"authorization": f"Bearer {TOKEN}", "content-length": "400000"}
    assert call_asgi(app, [b"x" * 400] * 1000, good)[::2] == (413, 0)


def test_the_service_refuses_big_bodies_behind_its_token(svc):
    limits = {"ABM_ML_MAX_BODY_BYTES": "2000", "ABM_ML_API_TOKEN": TOKEN}
    big = json.dumps({"records": [{"account_id": f"A{i}"} for i in range(200)]}).encode()
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    with asgi_client(svc.AbmScoringService, **limits) as c:
        assert_error_shape(c.post("/score", content=big, headers=auth), 413)
        assert_error_shape(
            c.post("/score", content=iter([big[:1500], big[1500:]]), headers=auth), 413
        )
        assert c.post("/score", content=big).status_code == 401
        small = json.dumps({"records": [{"account_id": "A"}]}).encode()
        assert (
            c.post("/score", content=iter([small[:10], small[10:]]), headers=auth).status_code
            == 200
        )


# -- bad input is a 4xx in the documented shape, never a 500 ---------------------------------


def test_the_bodies_that_once_got_500_get_4xx(svc):
    nested = b'{"records": [{"account_id": "a", "industry": ' + b"[" * 1000 + b"]" * 1000 + b"}]}"
    surrogate = b'{"records": [{"account_id": "a", "industry": "\\ud800"}]}'
    with asgi_client(svc.AbmScoringService) as c:
        for path in ("/score", "/rank", "/explain"):
            assert_error_shape(c.post(path, content=nested), 400)
            assert c.post(path, json={"records": [{"account_id": "a"}]}).status_code == 200
            body = assert_error_shape(c.post(path, content=surrogate), 400)
            assert "records[0].industry" in body["error"]
        huge = b'{"records": [{"account_id": "a", "employees": 1e400}]}'
        body = assert_error_shape(c.post("/score", content=huge), 422)
        assert body["errors"][0] | {"message": ""} == {
            "index": 0,
            "field": "employees",
            "message": "",
            "type": "finite_number",
        }
        for value in (0.5, 7, "maybe"):
            record = {"account_id": "a", "has_economic_buyer": value}
            body = assert_error_shape(c.post("/score", json={"records": [record]}), 422)
            assert body["errors"][0]["field"] == "has_economic_buyer"
        words = [
            {"account_id": str(i), "has_economic_buyer": v}
            for i, v in enumerate(["yes", "No", 1, False])
        ]
        assert c.post("/score", json={"records": words}).status_code == 200


# -- a model that cannot be read ---------------------------------------------------------------


@pytest.fixture(scope="module")
def corrupt_tag(deployment):
    """A copy of the deployed Bento model whose scorer.joblib is cut short (a damaged store)."""
    import bentoml

    good = bentoml.models.get(deployment["tag"])
    labels = {**good.info.labels, "alias": "corrupt-copy"}  # never found by deploy("champion")
    with bentoml.models.create(
        good.tag.name, labels=labels, metadata=dict(good.info.metadata), module=good.info.module
    ) as model:
        for item in Path(good.path).iterdir():
            if item.is_dir():
                shutil.copytree(item, Path(model.path) / item.name)
    scorer_file = next(Path(bentoml.models.get(model.tag).path).rglob("scorer.joblib"))
    scorer_file.write_bytes(scorer_file.read_bytes()[:4000])
    yield str(model.tag)
    bentoml.models.delete(model.tag)


def test_serve_refuses_a_corrupt_model_before_starting(corrupt_tag, deployment, monkeypatch):
    def exec_server(*args):
        raise AssertionError("serve() started a server on a model it cannot read")

    monkeypatch.setattr(os, "execve", exec_server)
    with pytest.raises(AbmInputError) as info:
        launch.serve(bento_model=corrupt_tag, port=free_port())
    message = str(info.value)
    assert corrupt_tag in message and f"version {deployment['version']}" in message
    assert "scorer.joblib" in message
    with pytest.raises(AbmInputError, match="not in the BentoML store"):
        launch.serve(bento_model="abm-account-scorer:nosuchtag", port=free_port())
    deployment_.check_deployed(deployment["tag"])  # the good one passes


@pytest.mark.slow
def test_serve_cli_names_a_missing_version(deployment, tmp_path):
    started = time.monotonic()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "abm-ml"), "serve", "--model", "12", "--port", "9"],
        cwd=tmp_path,
        env={**os.environ, "ABM_ML_MODELS_DIR": deployment["models_dir"]},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "version 12" in done.stderr and "KeyError" not in done.stderr
    assert time.monotonic() - started < 60


def test_a_service_without_its_model_is_not_ready(svc, monkeypatch):
    def unreadable(bento_model):
        raise AbmInputError("scorer.joblib cannot be read (EOFError)", field="model")

    monkeypatch.setattr(svc, "load_scorer", unreadable)
    instance = svc.AbmScoringService.inner()
    assert instance.__is_ready__() is False
    with asgi_client(svc.AbmScoringService) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 503
        for path in ("/score", "/explain"):
            assert_error_shape(c.post(path, json={"records": [{"account_id": "a"}]}), 503)


@pytest.mark.slow
def test_a_real_server_on_a_corrupt_model_answers_503_quickly(corrupt_tag, tmp_path):
    """``bentoml serve`` started by hand (no check before): not ready, and says so at once."""
    import httpx

    port = free_port()
    argv, env = launch.serve_command(corrupt_tag, port=port, workers=1)
    proc = start_server(argv, env, log_path=tmp_path / "server.log")
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=15) as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if client.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            time.sleep(3)  # the workers have tried, and failed, to load the model
            for _ in range(3):
                started = time.monotonic()
                assert client.get(f"{base}/readyz").status_code == 503
                assert time.monotonic() - started < 8
            started = time.monotonic()
            resp = client.post(f"{base}/score", json={"records": [{"account_id": "a"}]})
            assert_error_shape(resp, 503)
            assert time.monotonic() - started < 8
    finally:
        stop_server(proc)
    log = (tmp_path / "server.log").read_text()
    # loaded once by the one worker, refused once: no crash loop
    assert log.count("the model cannot be loaded") == 1, log[-3000:]
    assert "Initializing service error" not in log


def test_an_unexpected_failure_is_a_500_in_the_documented_shape(svc, monkeypatch, caplog):
    from abm_ml.service import handlers

    def broken(self, request, rows):
        raise RuntimeError("a bug in building the answer")

    monkeypatch.setattr(handlers.Frontend, "score_body", broken)
    with asgi_client(svc.AbmScoringService) as c:
        body = assert_error_shape(c.post("/score", json={"records": [{"account_id": "a"}]}), 500)
    assert "internal error" in body["error"] and "a bug" not in body["error"]
    assert "a bug in building the answer" in caplog.text
