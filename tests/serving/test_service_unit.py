"""The scoring service's logic: input contract, scorer calls, ranking, access, deployment.

Uses the small real model of the ``trained`` fixture. The deployment tests log it to a private
MLflow store and import it into a private BentoML home (``BENTOML_HOME`` in a temp dir).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from abm_ml import config as cfg
from abm_ml.errors import AbmInputError
from abm_ml.service import contract, handlers, launch, responses
from abm_ml.service import deploy as deployment_
from abm_ml.service.auth import BearerAuthMiddleware
from abm_ml.service.contract import RecordSchema, ServingError, ValidatedRequest
from abm_ml.service.settings import ServiceConfig, Settings

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def scorer(trained):
    return trained.scorer


@pytest.fixture(scope="module")
def schema(scorer) -> RecordSchema:
    return RecordSchema(scorer.features)


# -- the input contract ---------------------------------------------------------------------


def test_schema_follows_the_features(scorer, schema):
    js = schema.json_schema()
    props = js["properties"]
    assert js["required"] == ["account_id"]
    assert js["additionalProperties"] is False
    assert props["account_id"]["type"] == "string"
    assert props["amount"] == {**props["amount"], "type": "number", "nullable": True}
    for f in scorer.features:
        p = props[f.name]
        assert p["nullable"] is True
        if f.type == "categorical":
            assert p["type"] == "string"
        elif f.type == "boolean":
            assert {v["type"] for v in p["anyOf"]} == {"boolean", "number"}
        else:
            assert p["type"] == "number"
    text = json.dumps(js)
    assert '"type": "null"' not in text and "$ref" not in text


def test_valid_batch_becomes_the_scorers_frame(trained, scorer, make_records):
    records = make_records(3)
    records[1] = {
        "account_id": "ACC-NEW",
        "industry": "space mining",
        "has_economic_buyer": True,
        "web_visits_30d": 7,
    }
    frame = contract.validate_records(records, scorer.features)
    assert list(frame.columns[:2]) == ["account_id", "amount"]
    assert set(scorer.feature_names) <= set(frame.columns)
    assert len(frame) == 3
    assert (
        frame.loc[1, "industry"] == "space mining"
    )  # unseen category kept: the scorer treats it as unknown
    assert frame.loc[1, "has_economic_buyer"] == 1.0
    assert math.isnan(frame.loc[1, "employees"]) and math.isnan(
        frame.loc[1, "amount"]
    )  # absent = missing
    assert frame["employees"].dtype == float


def test_wrong_type_names_the_record_and_field(trained, scorer, make_records):
    records = make_records(4)
    records[2]["employees"] = "1200"
    with pytest.raises(ServingError) as info:
        contract.validate_records(records, scorer.features)
    err = info.value
    assert err.status == 422 and err.index == 2 and err.field == "employees"
    assert "record 2" in str(err) and "employees" in str(err)


@pytest.mark.parametrize(
    ("record", "field", "kind"),
    [
        ({"account_id": "a", "industry": 5}, "industry", "string_type"),
        ({"account_id": "a", "web_visits_30d": True}, "web_visits_30d", "float_type"),
        ({"account_id": "a", "has_economic_buyer": "yes"}, "has_economic_buyer", None),
        ({"industry": "software"}, "account_id", "missing"),
        ({"account_id": 17}, "account_id", "string_type"),
        ({"account_id": ""}, "account_id", "string_too_short"),
        ({"account_id": "a", "web_visitz": 3}, "web_visitz", "extra_forbidden"),
    ],
)
def test_each_kind_of_bad_record_is_refused(schema, record, field, kind):
    with pytest.raises(ServingError) as info:
        schema.validate_batch([{"account_id": "ok"}, record])
    err = info.value
    assert (err.status, err.index, err.field) == (422, 1, field)
    if kind:
        assert err.errors[0]["type"] == kind


def test_every_bad_record_is_listed(schema):
    batch = [
        {"account_id": "a", "employees": "x"},
        {"account_id": "b"},
        {"account_id": "c", "nope": 1},
        "not an object",
    ]
    with pytest.raises(ServingError) as info:
        schema.validate_batch(batch)
    where = [(e["index"], e["field"]) for e in info.value.errors]
    assert where == [(0, "employees"), (2, "nope"), (3, None)]
    assert "(and 2 more)" in str(info.value)


def test_unknown_fields_can_be_ignored(scorer):
    lenient = RecordSchema(scorer.features, ignore_unknown_fields=True)
    rows = lenient.validate_batch([{"account_id": "a", "crm_owner": "jane", "employees": 40}])
    assert "crm_owner" not in rows[0] and rows[0]["employees"] == 40.0
    assert lenient.json_schema().get("additionalProperties", True) is not False


def test_batch_shape_and_size(schema):
    for payload, status in (({"account_id": "a"}, 422), ([], 422), ("x", 422)):
        with pytest.raises(ServingError) as info:
            schema.validate_batch(payload)
        assert info.value.status == status
    with pytest.raises(ServingError) as info:
        schema.validate_batch([{"account_id": str(i)} for i in range(6)], max_records=5)
    assert info.value.status == 413 and "5" in str(info.value)
    assert (
        len(schema.validate_batch([{"account_id": str(i)} for i in range(5)], max_records=5)) == 5
    )


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, None),
        (b"", 400, None),
        (b'{"records": [{"account_id": "a", "employees": NaN}]}', 400, None),
        (b'[{"account_id": "a"}]', 422, None),
        (b'{"rows": []}', 422, "rows"),
        (b'{"records": [{"account_id": "a"}], "extra": 1}', 422, "extra"),
        (b"{}", 422, "records"),
    ],
)
def test_parse_request_statuses(schema, body, status, field):
    with pytest.raises(ServingError) as info:
        schema.parse_request(body, Settings())
    assert info.value.status == status
    assert info.value.field == field


def test_parse_request_limits_and_rank_options(schema):
    body = json.dumps({"records": [{"account_id": "a"}] * 3}).encode()
    with pytest.raises(ServingError) as info:
        schema.parse_request(body, Settings(max_records=2))
    assert info.value.status == 413
    with pytest.raises(ServingError) as info:
        schema.parse_request(body, Settings(max_body_bytes=10))
    assert info.value.status == 413
    ok = schema.parse_request(
        json.dumps({"records": [{"account_id": "a"}], "top": 1, "sort_by": "propensity"}).encode(),
        Settings(),
        kind="rank",
    )
    assert (ok.top, ok.sort_by, len(ok.records)) == (1, "propensity", 1)
    for extra, field in (
        ({"top": 0}, "top"),
        ({"top": "3"}, "top"),
        ({"top": True}, "top"),
        ({"sort_by": "score"}, "sort_by"),
    ):
        with pytest.raises(ServingError) as info:
            schema.parse_request(
                json.dumps({"records": [{"account_id": "a"}], **extra}).encode(),
                Settings(),
                kind="rank",
            )
        assert (info.value.status, info.value.field) == (422, field)
    # top/sort_by belong to /rank only
    with pytest.raises(ServingError):
        schema.parse_request(
            json.dumps({"records": [{"account_id": "a"}], "top": 1}).encode(),
            Settings(),
            kind="score",
        )


def test_settings_from_env():
    s = Settings.from_env(
        {"ABM_ML_MAX_RECORDS": "7", "ABM_ML_IGNORE_UNKNOWN_FIELDS": "1", "ABM_ML_API_TOKEN": "t0k"}
    )
    assert (s.max_records, s.ignore_unknown_fields, s.api_token) == (7, True, "t0k")
    assert "t0k" not in repr(s)
    assert Settings.from_env({}) == Settings()
    with pytest.raises(AbmInputError, match="ABM_ML_MAX_RECORDS"):
        Settings.from_env({"ABM_ML_MAX_RECORDS": "lots"})


# -- calling the scorer ---------------------------------------------------------------------


def test_score_rows_is_the_scorers_output(trained, scorer, schema, make_records):
    records = make_records(6)
    records.append({"account_id": "ACC-NEW", "industry": "never seen", "employees": None})
    rows = schema.validate_batch(records)
    results = handlers.score_rows(scorer, rows)
    expected = scorer.score(contract.records_frame(rows, scorer.features))
    assert [r["account_id"] for r in results] == [r["account_id"] for r in records]
    np.testing.assert_allclose(
        [r["propensity"] for r in results], expected["propensity"].to_numpy()
    )
    np.testing.assert_allclose([r["priority"] for r in results], expected["priority"].to_numpy())
    assert [r["tier"] for r in results] == expected["tier"].tolist()
    first = results[0]
    for key in responses.ScoredAccount.model_fields:
        if key not in ("model_name", "model_version"):
            assert key in first
    assert set(first["reasons"]) == {"up", "down"}
    assert first["days_to_close_p10"] <= first["days_to_close_p50"] <= first["days_to_close_p90"]
    json.dumps(results, allow_nan=False)


def test_holdout_values_are_unchanged_by_the_contract(trained, scorer, schema, make_records):
    """Validation must not change what the model sees: same scores as the raw holdout rows."""
    records = make_records(20)
    via_service = handlers.score_rows(scorer, schema.validate_batch(records))
    direct = scorer.score(trained.holdout.head(20), with_reasons=False)
    np.testing.assert_allclose(
        [r["propensity"] for r in via_service], direct["propensity"].to_numpy(), rtol=1e-12
    )


class _FailsOn:
    """A scorer that fails on any batch holding account 'BAD' (a model bug, not bad input)."""

    def __init__(self, scorer):
        self._scorer = scorer

    def __getattr__(self, name):
        return getattr(self._scorer, name)

    def score(self, frame, **kwargs):
        if (frame["account_id"] == "BAD").any():
            raise ValueError("boom")
        return self._scorer.score(frame, **kwargs)


def test_a_failing_record_fails_alone(trained, scorer, schema, make_records):
    records = make_records(3)
    records[1]["account_id"] = "BAD"
    rows = schema.validate_batch(records)
    results = handlers.score_rows(_FailsOn(scorer), rows)
    assert handlers.ERROR_KEY in results[1] and "boom" in results[1][handlers.ERROR_KEY]
    assert results[0]["account_id"] == records[0]["account_id"] and results[2]["propensity"] > 0
    model = deployment_.DeployedModel(
        "abm-account-scorer:x",
        "abm-account-scorer",
        "1",
        "champion",
        None,
        None,
        None,
        None,
        None,
        {},
        [f.to_dict() for f in scorer.features],
    )
    frontend = handlers.Frontend(model, Settings())
    with pytest.raises(ServingError) as info:
        frontend.score_body(ValidatedRequest(rows), results)
    assert info.value.status == 500 and info.value.index == 1


def test_explain_rows_are_full_contributions(trained, scorer, schema, make_records):
    rows = schema.validate_batch(make_records(4))
    explained = handlers.explain_rows(scorer, rows)
    scored = handlers.score_rows(scorer, rows)
    for e, s in zip(explained, scored):
        assert set(e["contributions"]) == set(scorer.feature_names)
        assert e["raw_log_odds"] == pytest.approx(
            e["base_value"] + sum(e["contributions"].values())
        )
        assert e["propensity"] == pytest.approx(s["propensity"])
        assert e["account_id"] == s["account_id"]
    assert "uncalibrated" in responses.EXPLAINS and "log-odds" in responses.EXPLAINS


def test_rank_results():
    results = [
        {"account_id": str(i), "priority": p, "propensity": 1 - p / 10, "expected_value": 1.0}
        for i, p in enumerate([3.0, 9.0, 3.0, 1.0])
    ]
    ranked = handlers.rank_results(results)
    assert [r["account_id"] for r in ranked] == ["1", "0", "2", "3"]  # ties keep input order
    assert [r["rank"] for r in ranked] == [1, 2, 3, 4]
    assert [
        r["account_id"] for r in handlers.rank_results(results, sort_by="propensity", top=2)
    ] == ["3", "0"]
    with pytest.raises(AbmInputError, match="sort_by"):
        handlers.rank_results(results, sort_by="score")


# -- access ---------------------------------------------------------------------------------


def test_bearer_token_check():
    auth = BearerAuthMiddleware(app=None, token="s3cret")
    assert auth.enabled
    assert auth.authorized(b"Bearer s3cret") and auth.authorized(b"bearer s3cret")
    for header in (
        None,
        b"",
        b"s3cret",
        b"Bearer s3cre",
        b"Bearer s3cret2",
        b"Basic s3cret",
        b"Bearer ",
    ):
        assert not auth.authorized(header)
    assert BearerAuthMiddleware(app=None, token="").authorized(None)


def test_openapi_schema_conversion():
    converted = responses.openapi_schema(responses.RankResponse.model_json_schema())
    text = json.dumps(converted)
    assert "$ref" not in text and "$defs" not in text and '"type": "null"' not in text
    assert converted["properties"]["results"]["items"]["properties"]["reasons"]["nullable"] is True
    assert (
        converted["properties"]["results"]["items"]["properties"]["reasons"]["properties"]["up"][
            "type"
        ]
        == "array"
    )


# -- deployment and the service classes (real MLflow store, real BentoML store) ------------------


@pytest.mark.slow
def test_deploy_records_lineage(deployment, trained):
    import bentoml

    model = bentoml.models.get(deployment["tag"])
    labels, meta = model.info.labels, model.info.metadata
    assert (
        labels["mlflow_model"] == cfg.REGISTERED_MODEL_NAME
        and labels["mlflow_version"] == deployment["version"]
    )
    assert labels["alias"] == "champion" and labels["mlflow_run_id"]
    assert meta["trained_at"] == trained.scorer.metadata["trained_at"]
    assert meta["metrics"]["roc_auc"]["value"] == pytest.approx(
        trained.propensity["abm-ml"]["roc_auc"].value
    )
    assert [f["name"] for f in meta["features"]] == trained.scorer.feature_names
    assert list(Path(model.path).rglob("scorer.joblib"))

    info = deployment_.DeployedModel.from_bento(model)
    assert (info.version, info.alias, info.calibration) == (
        deployment["version"],
        "champion",
        trained.scorer.metadata["calibration"],
    )
    # Same version and alias: reused; force: a new import.
    assert str(deployment_.deploy("champion")) == deployment["tag"]
    forced = deployment_.deploy("champion", force=True)
    assert str(forced) != deployment["tag"]
    assert str(deployment_.deploy("champion")) in (deployment["tag"], str(forced))
    bentoml.models.delete(forced)
    with pytest.raises(AbmInputError, match="alias"):
        deployment_.deploy("no-such-alias")


@pytest.mark.slow
def test_service_classes_use_the_deployed_model(svc, deployment, trained, make_records):
    import bentoml

    # The model is declared at class scope, so a built Bento carries it.
    for service in (svc.AbmScoringService, svc.AccountScorerRunner):
        assert isinstance(service.inner.__dict__["bento_model"], bentoml.models.BentoModel)
        assert [str(m.tag) for m in service.models] == [deployment["tag"]]
    assert svc.AccountScorerRunner.apis["score_records"].batchable
    assert svc.AccountScorerRunner.apis["explain_records"].batchable

    runner = svc.AccountScorerRunner()
    assert runner.__is_ready__()
    rows = RecordSchema(trained.scorer.features).validate_batch(make_records(4))
    via_runner = runner.score_records(rows)
    assert via_runner == handlers.score_rows(runner.scorer, rows)
    np.testing.assert_allclose(
        [r["propensity"] for r in via_runner],
        [r["propensity"] for r in handlers.score_rows(trained.scorer, rows)],
        rtol=1e-12,
    )
    assert len(runner.explain_records(rows)) == 4


# -- the internal runner connection -------------------------------------------------------------


def test_call_runner_retries_a_dropped_connection_only():
    import asyncio

    import aiohttp

    calls = []

    async def flaky(records):
        calls.append(len(records))
        if len(calls) < 3:
            raise aiohttp.ServerDisconnectedError()
        return [{"ok": True}] * len(records)

    assert asyncio.run(handlers.call_runner(flaky, [{"a": 1}])) == [{"ok": True}]
    assert calls == [1, 1, 1]

    async def broken(records):
        raise ValueError("a model error is not retried")

    with pytest.raises(ValueError):
        asyncio.run(handlers.call_runner(broken, []))

    async def always_dropped(records):
        raise RuntimeError("Session is closed")

    with pytest.raises(RuntimeError):
        asyncio.run(handlers.call_runner(always_dropped, [], attempts=2))


def test_keep_runner_session():
    class Manager:
        max_requests, max_age = 100, 300.0

    class Client:
        def __init__(self):
            self._session_manager = Manager()

    class Proxy:
        def __init__(self):
            self._async = Client()

    proxy = Proxy()
    assert handlers.keep_runner_session(proxy)
    assert proxy._async._session_manager.max_requests > 10**9
    assert handlers.keep_runner_session(object()) is False


# -- responses follow the documented models ---------------------------------------------------


def _frontend(scorer, **settings) -> handlers.Frontend:
    model = deployment_.DeployedModel(
        tag="abm-account-scorer:x",
        name="abm-account-scorer",
        version="1",
        alias="champion",
        run_id=None,
        trained_at="2026-01-01",
        dataset="tiny-crm",
        calibration="isotonic",
        deployed_at=None,
        metrics={"roc_auc": {"value": 0.8, "low": 0.7, "high": 0.9}},
        features=[f.to_dict() for f in scorer.features],
    )
    return handlers.Frontend(model, Settings(**settings))


def test_bodies_are_the_documented_models(scorer, schema, make_records):
    """What the scorer returns is exactly what ScoredAccount documents: nothing dropped or added."""
    frontend = _frontend(scorer)
    request = ValidatedRequest(schema.validate_batch(make_records(5)))
    rows = handlers.score_rows(scorer, request.records)
    documented = set(responses.ScoredAccount.model_fields) - {"model_name", "model_version"}
    assert set(rows[0]) == documented
    sent = json.loads(responses.dump(frontend.score_body(request, rows)))
    assert sent["results"][0]["propensity"] == rows[0]["propensity"]
    responses.ScoreResponse.model_validate(sent)
    ranked = json.loads(responses.dump(frontend.rank_body(request, rows)))
    assert [r["rank"] for r in ranked["results"]] == [1, 2, 3, 4, 5]
    responses.RankResponse.model_validate(ranked)
    explained = handlers.explain_rows(scorer, request.records)
    responses.ExplainResponse.model_validate(
        json.loads(responses.dump(frontend.explain_body(request, explained)))
    )
    meta = json.loads(responses.dump(frontend.metadata()))
    assert meta["features"][0] == {
        k: scorer.features[0].to_dict()[k] for k in ("name", "type", "description")
    }
    # The models refuse what they do not document, so validating an answer catches drift.
    with pytest.raises(ValidationError, match="undocumented"):
        responses.ScoreResponse.model_validate({**sent, "undocumented": 1})
    with pytest.raises(ValidationError, match="undocumented"):
        responses.ScoredAccount.model_validate({**sent["results"][0], "undocumented": 1})


# -- launching and importing -----------------------------------------------------------------


def test_serve_command_needs_no_checkout(tmp_path, monkeypatch):
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "home"))
    argv, env = launch.serve_command(
        "abm-account-scorer:abc", port=4321, workers=2, env={"ABM_ML_API_TOKEN": "t"}
    )
    assert argv[argv.index("serve") + 1] == launch.SERVICE_IMPORT
    assert "--working-dir" not in argv and argv[argv.index("--port") + 1] == "4321"
    assert (env["ABM_ML_BENTO_MODEL"], env["ABM_ML_WORKERS"], env["ABM_ML_API_TOKEN"]) == (
        "abm-account-scorer:abc",
        "2",
        "t",
    )
    # The service module is part of the installed package, not a file of the checkout.
    module = launch.SERVICE_IMPORT.split(":")[0]
    assert importlib.util.find_spec(module).origin.endswith("abm_ml/service/bento.py")


def test_service_config_from_env():
    config = ServiceConfig.from_env(
        {"ABM_ML_ADAPTIVE_BATCHING": "0", "ABM_ML_RUNNER_WORKERS": "3", "ABM_ML_WORKERS": ""}
    )
    assert (config.adaptive_batching, config.runner_workers, config.workers) == (False, 3, 1)
    assert ServiceConfig.from_env({}) == ServiceConfig()
    with pytest.raises(AbmInputError, match="ABM_ML_MAX_BATCH_SIZE"):
        ServiceConfig.from_env({"ABM_ML_MAX_BATCH_SIZE": "1"})


def test_importing_the_service_has_no_side_effects(tmp_path):
    """Importing the service package configures nothing, creates nothing, reads no store."""
    code = (
        "import json, sys\n"
        "import abm_ml.service, abm_ml.service.settings, abm_ml.service.contract\n"
        "import abm_ml.service.responses, abm_ml.service.handlers, abm_ml.service.auth\n"
        "import abm_ml.service.deploy, abm_ml.service.launch, abm_ml.testing\n"
        "print(json.dumps(sorted(m for m in ('mlflow', 'bentoml') if m in sys.modules)))\n"
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BENTOML_", "ABM_ML_"))
    }
    env.update(
        BENTOML_HOME=str(tmp_path / "bentoml"),
        ABM_ML_MODELS_DIR=str(tmp_path / "models"),
        ABM_ML_REPORTS_DIR=str(tmp_path / "reports"),
        ABM_ML_DATA_DIR=str(tmp_path / "data"),
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == []
