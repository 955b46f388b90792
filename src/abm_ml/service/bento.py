"""BentoML service scoring target accounts: declarations, endpoints and access only.

Two services run under ``bentoml serve``:

* ``AbmScoringService`` (public): a FastAPI app mounted on BentoML with ``/score``, ``/rank``,
  ``/explain`` and ``/metadata`` (BentoML adds ``/healthz``, ``/readyz``, ``/metrics`` and the
  OpenAPI document ``/docs.json``). It validates each request against the model's features and
  answers 400/413/422 itself; with ``ABM_ML_API_TOKEN`` set, every path but ``/healthz`` needs
  ``Authorization: Bearer <token>``.
* ``AccountScorerRunner`` (internal, on a Unix socket): loads the ``AccountScorer`` from the Bento
  model and exposes batchable methods, so BentoML's adaptive batching merges concurrent requests
  into one ``AccountScorer.score`` call.

Request handling lives in :mod:`abm_ml.service.handlers`, the input contract in
:mod:`~abm_ml.service.contract`, the response models in :mod:`~abm_ml.service.responses`;
see serving/README.md for settings.
"""

from __future__ import annotations

import logging
from typing import Any

import bentoml
from fastapi import FastAPI, Request
from pydantic import BaseModel
from starlette.responses import Response

from abm_ml.errors import AbmInputError
from abm_ml.service import handlers, responses
from abm_ml.service.auth import BearerAuthMiddleware
from abm_ml.service.contract import Kind, RecordSchema, ServingError, field_error
from abm_ml.service.deploy import DeployedModel, load_scorer
from abm_ml.service.settings import ENV_BENTO_MODEL, ServiceConfig, Settings, bento_model_tag

logger = logging.getLogger(__name__)

CONFIG = ServiceConfig.from_env()
BENTO_MODEL = bentoml.models.BentoModel(bento_model_tag())
_stored = BENTO_MODEL.stored
if _stored is None:
    raise AbmInputError(
        f"Bento model {BENTO_MODEL.tag} is not in the BentoML store (BENTOML_HOME); "
        "import one with `abm-ml deploy` or start the service with `abm-ml serve`",
        field=ENV_BENTO_MODEL,
    )
MODEL = DeployedModel.from_bento(_stored)
SETTINGS = Settings.from_env()
SCHEMA = RecordSchema(MODEL.features, ignore_unknown_fields=SETTINGS.ignore_unknown_fields)

BATCHING = {
    "batchable": CONFIG.adaptive_batching,
    "max_batch_size": CONFIG.max_batch_size,
    "max_latency_ms": CONFIG.max_latency_ms,
}


@bentoml.service(
    name="abm_scorer_runner",
    workers=CONFIG.runner_workers,
    threads=1,
    traffic={"timeout": CONFIG.timeout_s},
)
class AccountScorerRunner:
    """Holds the AccountScorer; batchable methods take and return one dict per record."""

    bento_model = BENTO_MODEL

    def __init__(self) -> None:
        self.scorer = load_scorer(self.bento_model)

    def __is_ready__(self) -> bool:
        return self.scorer is not None

    @bentoml.api(**BATCHING)
    def score_records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return handlers.score_rows(self.scorer, records)

    @bentoml.api(**BATCHING)
    def explain_records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return handlers.explain_rows(self.scorer, records)


app = FastAPI(
    title="abm-ml account scoring",
    version=MODEL.version or "unknown",
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
)


def _json(body: BaseModel | dict[str, Any], status: int = 200) -> Response:
    return Response(responses.dump(body), status_code=status, media_type="application/json")


def _error(status: int, message: str, errors: list[dict[str, Any]] | None = None) -> Response:
    return _json(responses.error_response(message, errors), status)


@bentoml.service(name="abm_scoring", workers=CONFIG.workers, traffic={"timeout": CONFIG.timeout_s})
@bentoml.asgi_app(app, path="/")
class AbmScoringService:
    """Scores, ranks and explains B2B target accounts with the deployed abm-ml model."""

    bento_model = BENTO_MODEL
    runner = bentoml.depends(AccountScorerRunner)

    def __init__(self) -> None:
        self.frontend = handlers.Frontend(MODEL, Settings.from_env(), SCHEMA)
        handlers.keep_runner_session(self.runner)

    def __is_ready__(self) -> bool:
        runner = self.runner
        if isinstance(runner, AccountScorerRunner.inner):  # in-process (to_asgi, tests)
            return runner.scorer is not None
        return True  # a separate runner process: BentoML's readiness probe (runner_probe) checks it

    async def _call(self, request: Request, kind: Kind) -> Response:
        try:
            parsed = self.frontend.parse(await request.body(), kind)
            if kind == "explain":
                rows = await handlers.call_runner(
                    self.runner.to_async.explain_records, parsed.records
                )
                return _json(self.frontend.explain_body(parsed, rows))
            rows = await handlers.call_runner(self.runner.to_async.score_records, parsed.records)
            if kind == "rank":
                return _json(self.frontend.rank_body(parsed, rows))
            return _json(self.frontend.score_body(parsed, rows))
        except ServingError as exc:
            return _error(exc.status, str(exc), exc.errors)
        except AbmInputError as exc:  # any other refusal of the input: a 422 naming the field
            return _error(422, str(exc), [field_error(None, exc.field, str(exc), "value_error")])
        except bentoml.exceptions.ServiceUnavailable:
            return _error(503, "the model is overloaded; retry later")
        except bentoml.exceptions.BentoMLException as exc:  # the runner answered with an error
            logger.error("runner call failed: %s", exc)
            return _error(500, "the model failed on this request; see the server log")

    @app.post(
        "/score",
        summary="Score 1..N accounts",
        openapi_extra=responses.openapi_extra(SCHEMA, "score", responses.ScoreResponse, SETTINGS),
    )
    async def score(self, request: Request) -> Response:
        """Per record: propensity, score, tier, days to close (P10/P50/P90), expected value, priority, reasons."""
        return await self._call(request, "score")

    @app.post(
        "/rank",
        summary="Rank accounts",
        openapi_extra=responses.openapi_extra(SCHEMA, "rank", responses.RankResponse, SETTINGS),
    )
    async def rank(self, request: Request) -> Response:
        """Scores sorted by `sort_by` (priority by default; or propensity, expected_value), with rank; `top` keeps the first N."""
        return await self._call(request, "rank")

    @app.post(
        "/explain",
        summary="Explain accounts",
        openapi_extra=responses.openapi_extra(
            SCHEMA, "explain", responses.ExplainResponse, SETTINGS
        ),
    )
    async def explain(self, request: Request) -> Response:
        """Every feature's SHAP contribution to the log-odds of the uncalibrated model, with the base value."""
        return await self._call(request, "explain")

    @app.get(
        "/metadata",
        summary="Model and input contract",
        openapi_extra={"responses": {"200": responses.response_docs(responses.MetadataResponse)}},
    )
    async def metadata(self) -> Response:
        """Model name, version, alias, training date, headline metrics and the expected input schema."""
        return _json(self.frontend.metadata())


AbmScoringService.add_asgi_middleware(BearerAuthMiddleware)
