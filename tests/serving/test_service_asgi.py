"""The BentoML service through its ASGI app (``AbmScoringService.to_asgi()``), in process.

The runner dependency is resolved in process here (no batching); the real server is in
test_service_integration.py. The model is the ``trained`` fixture's, deployed to a private
MLflow store and BentoML home.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re

import numpy as np
import pytest

from abm_ml.service import handlers as serving

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`"),
]

TOKEN = "tok-3f9a-secret"


@pytest.fixture(scope="module")
def deployment(trained, tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "abm-serving-deployment"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ABM_ML_MODELS_DIR", str(root / "models"))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        mp.setenv("ABM_ML_REPORTS_DIR", str(root / "reports"))
        mp.setenv("BENTOML_DO_NOT_TRACK", "True")
        for name in (serving.ENV_API_TOKEN, serving.ENV_MAX_RECORDS, serving.ENV_IGNORE_UNKNOWN):
            mp.delenv(name, raising=False)
        with serving.use_bentoml_home(root / "bentoml"):
            info = serving.bootstrap_deployment(trained, root)
            mp.setenv(serving.ENV_BENTO_MODEL, info["tag"])
            yield info


@pytest.fixture(scope="module")
def svc(deployment):
    return serving.import_service()


def make_app(svc, *, metrics: bool):
    """``AbmScoringService.to_asgi()``; or the same factory without Prometheus metrics, which
    register process-wide collectors once (a second app with metrics would collide)."""
    if metrics:
        return svc.AbmScoringService.to_asgi()
    from _bentoml_impl.server.app import ServiceAppFactory

    svc.AbmScoringService.inject_config()
    return ServiceAppFactory(svc.AbmScoringService, is_main=True, enable_metrics=False)()


@contextlib.contextmanager
def client_for(svc, *, metrics: bool = False, **env: str | None):
    """A TestClient on a fresh app (lifespan runs: the service instance reads its settings)."""
    from starlette.testclient import TestClient

    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            if value is None:
                mp.delenv(name, raising=False)
            else:
                mp.setenv(name, value)
        with TestClient(make_app(svc, metrics=metrics)) as client:
            yield client


@pytest.fixture(scope="module")
def client(svc):
    with client_for(svc, metrics=True) as c:
        yield c


def records(trained, n: int = 5) -> list[dict]:
    return serving.json_records(trained.holdout, trained.scorer.features, n)


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
    assert (
        meta["max_records"] == serving.DEFAULT_MAX_RECORDS
        and meta["ignore_unknown_fields"] is False
    )


def test_score_returns_the_scorers_numbers(client, trained, deployment):
    recs = records(trained, 6)
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
    assert set(serving.ScoredAccount.model_fields) <= set(first)
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


def test_rank_sorts_and_cuts(client, trained):
    recs = records(trained, 12)
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


def test_explain_gives_every_contribution(client, trained):
    recs = records(trained, 3)
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
