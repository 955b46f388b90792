"""The BentoML service through its ASGI app (``AbmScoringService.to_asgi()``), in process.

The runner dependency is resolved in process here (no batching); the real server is in
test_service_integration.py. The model is the ``trained`` fixture's, deployed to a private
MLflow store and BentoML home (tests/serving/conftest.py).
"""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pandas as pd
import pytest

from abm_ml.modeling.ranking import SORT_KEYS, rank_accounts
from abm_ml.service import responses
from abm_ml.service.settings import DEFAULT_MAX_RECORDS
from abm_ml.testing import asgi_client

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`"),
]

TOKEN = "tok-3f9a-secret"


def client_for(svc, *, metrics: bool = False, **env: str | None):
    """A TestClient on a fresh app of the service (lifespan runs: the instance reads ``env``)."""
    return asgi_client(svc.AbmScoringService, metrics=metrics, **env)


@pytest.fixture(scope="module")
def client(svc):
    with client_for(svc, metrics=True) as c:
        yield c


def test_health_ready_metadata(client, deployment, trained):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    meta = client.get("/metadata").json()
    assert meta["model_name"] == "abm-account-scorer"
    assert (meta["model_version"], meta["alias"], meta["bento_model"]) == (
        deployment["version"],
        "champion",
        deployment["tag"],
    )
    assert meta["trained_at"] == trained.scorer.metadata["trained_at"]
    assert 0.5 < meta["metrics"]["roc_auc"]["value"] <= 1
    assert {"low", "high"} <= set(meta["metrics"]["roc_auc"])
    schema = meta["input_schema"]
    assert schema["required"] == ["account_id"]
    assert set(trained.scorer.feature_names) | {"account_id", "amount"} == set(schema["properties"])
    assert meta["max_records"] == DEFAULT_MAX_RECORDS and meta["ignore_unknown_fields"] is False


def test_requests_cost_no_thread_hop_and_no_idle_extras(svc):
    """What the served throughput rests on (bench/bench_service.py measures the effect)."""
    from fastapi.routing import APIRoute

    routes = [r for r in svc.app.routes if isinstance(r, APIRoute)]
    assert {r.path for r in routes} >= {"/score", "/rank", "/explain", "/metadata"}
    # A FastAPI dependency that is a plain function runs in a thread pool on every request;
    # BentoML's class-view routes get ``self`` that way, so the endpoints take none.
    assert not [r.path for r in routes if r.dependant.dependencies]
    config = svc.AbmScoringService.config
    assert config["logging"]["access"]["enabled"] is False
    assert config["tracing"] == {"excluded_urls": [".*"]}
    assert config["metrics"]["enabled"] is True


def test_score_returns_the_scorers_numbers(client, trained, deployment, make_records):
    recs = make_records(6)
    resp = client.post("/score", json={"records": recs})
    assert resp.status_code == 200
    body = resp.json()
    assert body["model"] == {
        "name": "abm-account-scorer",
        "version": deployment["version"],
        "alias": "champion",
        "bento_model": deployment["tag"],
    }
    assert body["count"] == 6
    results = body["results"]
    assert [r["account_id"] for r in results] == [r["account_id"] for r in recs]
    expected = trained.scorer.score(trained.holdout.head(6))
    np.testing.assert_allclose(
        [r["propensity"] for r in results], expected["propensity"], rtol=1e-12
    )
    np.testing.assert_allclose(
        [r["days_to_close_p50"] for r in results], expected["days_to_close_p50"], rtol=1e-12
    )
    assert [r["tier"] for r in results] == expected["tier"].tolist()
    first = results[0]
    assert set(responses.ScoredAccount.model_fields) <= set(first)
    assert (first["model_name"], first["model_version"]) == (
        "abm-account-scorer",
        deployment["version"],
    )
    assert first["reasons"]["up"] or first["reasons"]["down"]
    assert first["reasons"] == expected["reasons"].iloc[0]


def test_missing_fields_and_unseen_categories_are_scored(client):
    resp = client.post(
        "/score",
        json={
            "records": [
                {"account_id": "only-id"},
                {
                    "account_id": "new-industry",
                    "industry": "asteroid mining",
                    "web_visits_30d": 12,
                    "has_economic_buyer": 1,
                },
                {"account_id": "nulls", "industry": None, "employees": None, "amount": None},
            ]
        },
    )
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert [r["account_id"] for r in results] == ["only-id", "new-industry", "nulls"]
    assert all(0 < r["propensity"] < 1 and r["amount"] > 0 for r in results)


def test_rank_sorts_and_cuts(client, trained, make_records):
    recs = make_records(12)
    full = client.post("/rank", json={"records": recs}).json()
    assert full["sort_by"] == "priority" and full["total"] == full["count"] == 12
    priorities = [r["priority"] for r in full["results"]]
    assert priorities == sorted(priorities, reverse=True)
    assert [r["rank"] for r in full["results"]] == list(range(1, 13))
    assert all(r["tier"] in "ABCD" for r in full["results"])
    top = client.post("/rank", json={"records": recs, "top": 3, "sort_by": "propensity"}).json()
    assert (top["total"], top["count"], top["sort_by"]) == (12, 3, "propensity")
    by_propensity = sorted(full["results"], key=lambda r: -r["propensity"])[:3]
    assert [r["account_id"] for r in top["results"]] == [r["account_id"] for r in by_propensity]
    bad = client.post("/rank", json={"records": recs, "sort_by": "score"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "sort_by"


def test_explain_gives_every_contribution(client, trained, make_records):
    recs = make_records(3)
    body = client.post("/explain", json={"records": recs}).json()
    assert "log-odds" in body["explains"] and "uncalibrated" in body["explains"]
    scored = client.post("/score", json={"records": recs}).json()["results"]
    for e, s in zip(body["results"], scored):
        assert set(e["contributions"]) == set(trained.scorer.feature_names)
        assert e["base_value"] + sum(e["contributions"].values()) == pytest.approx(
            e["raw_log_odds"]
        )
        assert e["propensity"] == pytest.approx(s["propensity"])
        assert set(e["values"]) == set(trained.scorer.feature_names)


@pytest.mark.parametrize(
    ("payload", "status", "index", "field"),
    [
        (b"{oops", 400, None, None),
        (b'{"records": [{"account_id": "a", "employees": Infinity}]}', 400, None, None),
        (
            {"records": [{"account_id": "a"}, {"account_id": "b", "employees": "200"}]},
            422,
            1,
            "employees",
        ),
        (
            {
                "records": [
                    {"account_id": "a"},
                    {"account_id": "b"},
                    {"account_id": "c", "industri": "x"},
                ]
            },
            422,
            2,
            "industri",
        ),
        ({"records": [{"industry": "software"}]}, 422, 0, "account_id"),
        ({"records": []}, 422, None, "records"),
        ({"records": [{"account_id": "a"}], "debug": True}, 422, None, "debug"),
    ],
)
def test_bad_requests(client, payload, status, index, field):
    kwargs = (
        {"content": payload, "headers": {"Content-Type": "application/json"}}
        if isinstance(payload, bytes)
        else {"json": payload}
    )
    resp = client.post("/score", **kwargs)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"]
    if status == 422:
        assert (body["errors"][0]["index"], body["errors"][0]["field"]) == (index, field)
        if index is not None:
            assert f"record {index}" in body["error"] and field in body["error"]
    # the service is still fine afterwards
    assert client.post("/score", json={"records": [{"account_id": "z"}]}).status_code == 200


def test_record_limit_and_unknown_field_option(svc):
    with client_for(svc, ABM_ML_MAX_RECORDS="3", ABM_ML_IGNORE_UNKNOWN_FIELDS="1") as c:
        too_many = c.post("/score", json={"records": [{"account_id": str(i)} for i in range(4)]})
        assert too_many.status_code == 413 and "3" in too_many.json()["error"]
        assert (
            c.post(
                "/score", json={"records": [{"account_id": str(i)} for i in range(3)]}
            ).status_code
            == 200
        )
        lenient = c.post(
            "/score", json={"records": [{"account_id": "a", "owner": "jane"}], "trace": 1}
        )
        assert lenient.status_code == 200, lenient.text
        assert c.get("/metadata").json()["ignore_unknown_fields"] is True


def test_token_protects_everything_but_healthz(svc, caplog):
    caplog.set_level(logging.DEBUG)
    with client_for(svc, ABM_ML_API_TOKEN=TOKEN) as c:
        assert c.get("/healthz").status_code == 200
        for method, path in (
            ("get", "/readyz"),
            ("get", "/metadata"),
            ("get", "/docs.json"),
            ("get", "/metrics"),
            ("get", "/livez"),
            ("post", "/score"),
            ("post", "/rank"),
            ("post", "/explain"),
        ):
            resp = getattr(c, method)(path)
            assert resp.status_code == 401, path
            assert resp.headers["www-authenticate"].startswith("Bearer")
        payload = {"records": [{"account_id": "a"}]}
        for header in ("Bearer wrong", f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN}x"):
            assert (
                c.post("/score", json=payload, headers={"Authorization": header}).status_code == 401
            )
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert c.post("/score", json=payload, headers=good).status_code == 200
        assert c.get("/readyz", headers=good).status_code == 200
        assert c.get("/metadata", headers=good).status_code == 200
    assert TOKEN not in caplog.text


def test_openapi_document(client, trained):
    resp = client.get("/docs.json")
    assert resp.status_code == 200
    doc = json.loads(resp.text)
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path, method in (
        ("/score", "post"),
        ("/rank", "post"),
        ("/explain", "post"),
        ("/metadata", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ):
        assert method in paths[path], path
    for path in ("/score", "/rank", "/explain"):
        op = paths[path]["post"]
        body_schema = op["requestBody"]["content"]["application/json"]["schema"]
        items = body_schema["properties"]["records"]["items"]
        assert set(trained.scorer.feature_names) <= set(items["properties"])
        assert items["required"] == ["account_id"]
        assert {"200", "400", "401", "413", "422"} <= set(op["responses"])
        # our schemas are OpenAPI 3.0 (nullable, no null type)
        assert '"type": "null"' not in json.dumps(op)
    assert set(
        paths["/rank"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]
    ) == {"records", "top", "sort_by"}
    assert (
        "results"
        in paths["/score"]["post"]["responses"]["200"]["content"]["application/json"]["schema"][
            "properties"
        ]
    )
    # every reference resolves
    components = doc.get("components", {}).get("schemas", {})
    for ref in re.findall(r'"\$ref": "([^"]+)"', json.dumps(doc)):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[-1] in components, ref
    assert (
        len(
            {
                op.get("operationId")
                for p in paths.values()
                for op in p.values()
                if op.get("operationId")
            }
        )
        >= 4
    )


# -- every answer is a documented response ----------------------------------------------------


def test_every_answer_is_its_documented_model(svc, make_records):
    """Each endpoint's body validates against the model its OpenAPI entry is generated from."""
    with client_for(svc) as client:
        _check_documented_answers(client, make_records(4))
    _check_errors_when_limited(svc, make_records(4))


def _check_documented_answers(client, recs: list[dict]) -> None:
    doc = client.get("/docs.json").json()
    answers = [
        ("/score", "post", {"records": recs}, 200, responses.ScoreResponse),
        ("/rank", "post", {"records": recs, "top": 2}, 200, responses.RankResponse),
        ("/explain", "post", {"records": recs}, 200, responses.ExplainResponse),
        ("/metadata", "get", None, 200, responses.MetadataResponse),
        ("/score", "post", {"records": [{"account_id": 3}]}, 422, responses.ErrorResponse),
        ("/rank", "post", {"records": recs, "sort_by": "x"}, 422, responses.ErrorResponse),
        ("/explain", "post", {"records": []}, 422, responses.ErrorResponse),
    ]
    for path, method, payload, status, model in answers:
        resp = client.request(method, path, json=payload)
        assert resp.status_code == status, (path, resp.text)
        assert resp.headers["content-type"] == "application/json"
        model.model_validate(resp.json())  # extra fields are forbidden: nothing undocumented
        documented = doc["paths"][path][method]["responses"][str(status)]
        expected = responses.response_docs(model, documented["description"])
        assert documented == _without_nulls(expected), path  # the document drops null defaults
    bad_json = client.post("/score", content=b"{", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400
    responses.ErrorResponse.model_validate(bad_json.json())


def _without_nulls(node):
    if isinstance(node, dict):
        return {k: _without_nulls(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [_without_nulls(v) for v in node]
    return node


def _check_errors_when_limited(svc, recs: list[dict]) -> None:
    with client_for(svc, ABM_ML_API_TOKEN=TOKEN, ABM_ML_MAX_RECORDS="2") as c:
        denied = c.post("/score", json={"records": recs})
        assert denied.status_code == 401
        responses.ErrorResponse.model_validate(denied.json())
        too_many = c.post(
            "/score", json={"records": recs}, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert too_many.status_code == 413
        responses.ErrorResponse.model_validate(too_many.json())


# -- /rank is the ranking of abm-ml rank ---------------------------------------------------------


@pytest.mark.parametrize("sort_by", SORT_KEYS)
def test_rank_endpoint_orders_as_the_cli(svc, deployment, make_records, tmp_path, sort_by):
    """Same records, same order from ``POST /rank`` and from ``abm-ml rank`` (file -> ranking),
    ties included: accounts identical but for their id keep their input order in both."""
    import bentoml

    from abm_ml.modeling.ranking import load_accounts
    from abm_ml.service.deploy import load_scorer

    base = make_records(10)
    twin = base[3]
    recs = list(base)
    for position, suffix in ((0, "a"), (5, "b"), (9, "c"), (12, "d")):
        recs.insert(position, {**twin, "account_id": f"twin-{suffix}"})
    recs.append({**base[7], "account_id": "twin-of-7"})

    with client_for(svc) as client:
        answer = client.post("/rank", json={"records": recs, "sort_by": sort_by})
    served = answer.json()["results"]

    path = tmp_path / "accounts.csv"
    pd.DataFrame(recs).to_csv(path, index=False)
    scorer = load_scorer(bentoml.models.get(deployment["tag"]))
    cli = rank_accounts(scorer, load_accounts(path), sort_by=sort_by).ranked

    assert [r["account_id"] for r in served] == cli["account_id"].tolist()
    np.testing.assert_allclose([r[sort_by] for r in served], cli[sort_by], rtol=1e-12)
    twins = [r["account_id"] for r in served if r["account_id"].startswith("twin-")]
    tied = [a for a in twins if a != "twin-of-7"]
    assert tied == ["twin-a", "twin-b", "twin-c", "twin-d"]  # ties keep input order
    order = [r["account_id"] for r in served]
    first = order.index("twin-a")
    assert order[first : first + 5] == ["twin-a", twin["account_id"], "twin-b", "twin-c", "twin-d"]


def test_a_worker_freezes_what_it_loaded_so_full_collections_stay_short(svc):
    """A full garbage collection in a worker walked every module and the model (~170 ms, the
    served p99 stalls); the service freezes them once the model is loaded."""
    import gc

    gc.unfreeze()
    try:
        with client_for(svc) as c:
            assert c.get("/readyz").status_code == 200
            assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()  # this test process keeps collecting what it loaded
