"""A real server on a free loopback port: readiness, scoring, errors, access, concurrency, build.

The server is started the way a user starts it, ``abm-ml serve --model champion``, in a working
directory outside the checkout (the service is imported from the installed package). It deploys
the champion of a private MLflow store into a private ``BENTOML_HOME`` (tests/serving/conftest.py)
and is always stopped, with every worker it spawned, in the fixture's teardown.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from abm_ml.service.settings import ENV_API_TOKEN, ENV_BENTO_MODEL, ENV_MAX_RECORDS
from abm_ml.testing import free_port, start_server, stop_server, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

TOKEN = "integration-token-7c1d"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_RECORDS = 40
PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(deployment, tmp_path_factory):
    """``abm-ml serve --model champion`` in the background, run from a folder outside the checkout."""
    elsewhere = tmp_path_factory.mktemp("server")
    log = elsewhere / "server.log"
    port = free_port()
    cli = Path(sys.executable).with_name("abm-ml")
    env = {**os.environ, ENV_API_TOKEN: TOKEN, ENV_MAX_RECORDS: str(MAX_RECORDS)}
    env.pop(ENV_BENTO_MODEL, None)  # the command deploys (here: finds) the champion itself
    argv = [str(cli), "serve", "--model", "champion", "--port", str(port)]
    proc = start_server(argv, env, cwd=elsewhere, log_path=log)
    children: list[psutil.Process] = []
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, token=TOKEN, timeout=240, proc=proc)
        children = psutil.Process(proc.pid).children(recursive=True)
        with httpx.Client(base_url=url, timeout=60) as client:
            yield {"client": client, "url": url, "proc": proc, "log": log}
    finally:
        stop_server(proc)
        assert proc.poll() is not None
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert TOKEN not in log.read_text(errors="replace")


def test_health_and_readiness(server):
    c = server["client"]
    assert c.get("/healthz").status_code == 200
    assert c.get("/readyz").status_code == 401
    assert c.get("/readyz", headers=AUTH).status_code == 200


def test_score_matches_in_process(server, trained, deployment, make_records):
    c = server["client"]
    recs = make_records(25, start=0)
    resp = c.post("/score", json={"records": recs}, headers=AUTH)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (
        body["model"]["version"] == deployment["version"] and body["model"]["alias"] == "champion"
    )
    expected = trained.scorer.score(trained.holdout.iloc[0:25])
    np.testing.assert_allclose(
        [r["propensity"] for r in body["results"]], expected["propensity"], rtol=1e-9
    )
    np.testing.assert_allclose(
        [r["expected_value"] for r in body["results"]], expected["expected_value"], rtol=1e-9
    )
    assert [r["reasons"] for r in body["results"]] == expected["reasons"].tolist()


def test_requests_are_not_logged_one_by_one(server, make_records):
    """The access log is off by default (ABM_ML_ACCESS_LOG=1 turns it on): no line per call."""
    c = server["client"]
    for _ in range(3):
        assert c.post("/score", json={"records": make_records(1)}, headers=AUTH).status_code == 200
    time.sleep(0.5)  # the serve process relays worker output asynchronously
    assert "path=/score" not in server["log"].read_text(errors="replace")


def test_rank_explain_metadata(server, trained, deployment, make_records):
    c = server["client"]
    recs = make_records(10, start=30)
    ranked = c.post("/rank", json={"records": recs, "top": 4}, headers=AUTH).json()
    assert [r["rank"] for r in ranked["results"]] == [1, 2, 3, 4] and ranked["total"] == 10
    priorities = [r["priority"] for r in ranked["results"]]
    assert priorities == sorted(priorities, reverse=True)
    explained = c.post("/explain", json={"records": recs[:2]}, headers=AUTH).json()
    assert set(explained["results"][0]["contributions"]) == set(trained.scorer.feature_names)
    meta = c.get("/metadata", headers=AUTH).json()
    assert (meta["model_version"], meta["alias"], meta["bento_model"]) == (
        deployment["version"],
        "champion",
        deployment["tag"],
    )
    assert meta["max_records"] == MAX_RECORDS
    doc = c.get("/docs.json", headers=AUTH).json()
    assert {"/score", "/rank", "/explain", "/metadata", "/healthz", "/readyz"} <= set(doc["paths"])


def test_errors_and_access(server):
    c = server["client"]
    ok = {"records": [{"account_id": "a"}]}
    assert c.post("/score", json=ok).status_code == 401
    assert c.post("/score", json=ok, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert (
        c.post(
            "/score", content=b"{nope", headers={**AUTH, "Content-Type": "application/json"}
        ).status_code
        == 400
    )
    too_many = c.post(
        "/score",
        json={"records": [{"account_id": str(i)} for i in range(MAX_RECORDS + 1)]},
        headers=AUTH,
    )
    assert too_many.status_code == 413
    bad = c.post(
        "/score",
        json={"records": [{"account_id": "a"}, {"account_id": "b", "web_visits_30d": "many"}]},
        headers=AUTH,
    )
    assert bad.status_code == 422
    err = bad.json()["errors"][0]
    assert (err["index"], err["field"]) == (1, "web_visits_30d")
    unknown = c.post(
        "/score", json={"records": [{"account_id": "a", "colour": "red"}]}, headers=AUTH
    )
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "colour"
    # the workers survived all of it
    assert c.post("/score", json=ok, headers=AUTH).status_code == 200


def big_body_answer(url: str, headers: str, sent_mb: int = 8) -> tuple[str, float]:
    """Declare a 400 MB body, send ``sent_mb`` of it; the status line and the seconds it took."""
    import socket
    import time
    from urllib.parse import urlsplit

    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=20) as sock:
        started = time.monotonic()
        sock.sendall(
            f"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {400 * 2**20}\r\n{headers}\r\n".encode()
        )
        try:
            for _ in range(sent_mb):
                sock.sendall(b" " * 2**20)
        except OSError:  # the server answered and closed: it stopped reading
            pass
        answer = b""
        while b"\r\n" not in answer:
            more = sock.recv(4096)
            if not more:
                break
            answer += more
        return answer.split(b"\r\n", 1)[0].decode(), time.monotonic() - started


def test_big_bodies_are_refused_before_they_are_read(server):
    """Once read whole before its 413 (10-13 s and ~1 GB per 400 MB body)."""
    authorized = f"Authorization: Bearer {TOKEN}\r\n"
    for headers, status in ((authorized, " 413 "), ("", " 401 ")):
        line, seconds = big_body_answer(server["url"], headers)
        assert status in line, line
        assert seconds < 10
    assert server["client"].get("/readyz", headers=AUTH).status_code == 200


def test_concurrent_requests_get_their_own_scores(server, trained, make_records):
    """32 concurrent one-record requests: each gets its own account's score back."""
    recs = make_records(32, start=0)
    expected = trained.scorer.score(trained.holdout.iloc[0:32], with_reasons=False)[
        "propensity"
    ].to_numpy()

    def one(i: int) -> tuple[int, float, str]:
        with httpx.Client(base_url=server["url"], timeout=60) as client:
            r = client.post("/score", json={"records": [recs[i]]}, headers=AUTH)
            assert r.status_code == 200, r.text
            res = r.json()["results"][0]
            return i, res["propensity"], res["account_id"]

    with ThreadPoolExecutor(max_workers=32) as pool:
        got = list(pool.map(one, range(32)))
    for i, propensity, account in got:
        assert account == recs[i]["account_id"]
        assert propensity == pytest.approx(expected[i], rel=1e-9)


def test_bento_build_carries_the_model(deployment, tmp_path):
    """``bentoml build -f serving/bentofile.yaml src`` lists the deployed model for the service."""
    import bentoml

    env = {
        **os.environ,
        "BENTOML_HOME": str(deployment["root"] / "bentoml"),
        ENV_BENTO_MODEL: deployment["tag"],
        "BENTOML_DO_NOT_TRACK": "True",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bentoml",
            "build",
            "-f",
            "serving/bentofile.yaml",
            "src",
            "--output",
            "tag",
        ],
        check=False,
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    tag = done.stdout.strip().splitlines()[-1].replace("__tag__:", "")
    bento = bentoml.get(tag)
    assert deployment["tag"] in {str(m.tag) for m in bento.info.all_models}
    assert {s.name for s in bento.info.services} == {"abm_scoring"}
    assert Path(bento.path_of("src/abm_ml/service/bento.py")).is_file()
    assert Path(bento.path_of("src/abm_ml/modeling/scorer.py")).is_file()
    bentoml.delete(tag)
