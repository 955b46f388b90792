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

The logic lives in :mod:`abm_ml.service.handlers`; see serving/README.md for settings.
"""

from __future__ import annotations

from typing import Any

import bentoml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from abm_ml.service import handlers as serving

CONFIG = serving.ServiceConfig.from_env()
BENTO_MODEL = bentoml.models.BentoModel(serving.bento_model_tag())
_stored = BENTO_MODEL.stored
if _stored is None:
    raise serving.AbmInputError(
        f"Bento model {BENTO_MODEL.tag} is not in the BentoML store (BENTOML_HOME); "
        "import one with abm_ml.serving.deploy() or start the service with abm_ml.serving.serve()",
        field=serving.ENV_BENTO_MODEL,
    )
MODEL = serving.DeployedModel.from_bento(_stored)
SETTINGS = serving.Settings.from_env()
SCHEMA = serving.RecordSchema(MODEL.features, ignore_unknown_fields=SETTINGS.ignore_unknown_fields)

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
        self.scorer = serving.load_scorer(self.bento_model)

    def __is_ready__(self) -> bool:
        return self.scorer is not None

    @bentoml.api(**BATCHING)
    def score_records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return serving.score_rows(self.scorer, records)

    @bentoml.api(**BATCHING)
    def explain_records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return serving.explain_rows(self.scorer, records)


app = FastAPI(
    title="abm-ml account scoring",
    version=MODEL.version or "unknown",
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
)
ERRORS = {"model": serving.ErrorResponse}


def _error(exc: serving.ServingError) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=exc.status)


@bentoml.service(name="abm_scoring", workers=CONFIG.workers, traffic={"timeout": CONFIG.timeout_s})
@bentoml.asgi_app(app, path="/")
class AbmScoringService:
    """Scores, ranks and explains B2B target accounts with the deployed abm-ml model."""

    bento_model = BENTO_MODEL
    runner = bentoml.depends(AccountScorerRunner)

    def __init__(self) -> None:
        self.frontend = serving.Frontend(MODEL, serving.Settings.from_env(), SCHEMA)
        serving.keep_runner_session(self.runner)

    def __is_ready__(self) -> bool:
        runner = self.runner
        if isinstance(runner, AccountScorerRunner.inner):  # in-process (to_asgi, tests)
            return runner.scorer is not None
        return True  # a separate runner process: BentoML's readiness probe (runner_probe) checks it

    async def _call(self, request: Request, kind: str) -> Response:
        try:
            parsed = self.frontend.parse(await request.body(), kind)  # type: ignore[arg-type]
            if kind == "explain":
                rows = await serving.call_runner(
                    self.runner.to_async.explain_records, parsed.records
                )
                return JSONResponse(self.frontend.explain_body(parsed, rows))
            rows = await serving.call_runner(self.runner.to_async.score_records, parsed.records)
            body = (
                self.frontend.rank_body(parsed, rows)
                if kind == "rank"
                else self.frontend.score_body(parsed, rows)
            )
            return JSONResponse(body)
        except serving.ServingError as exc:
            return _error(exc)
        except bentoml.exceptions.ServiceUnavailable:
            return JSONResponse(
                {"error": "the model is overloaded; retry later", "errors": []}, status_code=503
            )
        except bentoml.exceptions.BentoMLException as exc:  # the runner answered with an error
            serving.logger.error("runner call failed: %s", exc)
            return JSONResponse(
                {"error": "the model failed on this request; see the server log", "errors": []},
                status_code=500,
            )

    @app.post(
        "/score",
        summary="Score 1..N accounts",
        openapi_extra=serving.openapi_extra(SCHEMA, "score", serving.ScoreResponse, SETTINGS),
    )
    async def score(self, request: Request) -> Response:
        """Per record: propensity, score, tier, days to close (P10/P50/P90), expected value, priority, reasons."""
        return await self._call(request, "score")

    @app.post(
        "/rank",
        summary="Rank accounts",
        openapi_extra=serving.openapi_extra(SCHEMA, "rank", serving.RankResponse, SETTINGS),
    )
    async def rank(self, request: Request) -> Response:
        """Scores sorted by `sort_by` (priority by default; or propensity, expected_value), with rank; `top` keeps the first N."""
        return await self._call(request, "rank")

    @app.post(
        "/explain",
        summary="Explain accounts",
        openapi_extra=serving.openapi_extra(SCHEMA, "explain", serving.ExplainResponse, SETTINGS),
    )
    async def explain(self, request: Request) -> Response:
        """Every feature's SHAP contribution to the log-odds of the uncalibrated model, with the base value."""
        return await self._call(request, "explain")

    @app.get(
        "/metadata",
        summary="Model and input contract",
        openapi_extra={"responses": {"200": serving.response_docs(serving.MetadataResponse)}},
    )
    async def metadata(self) -> Response:
        """Model name, version, alias, training date, headline metrics and the expected input schema."""
        return JSONResponse(self.frontend.metadata())


AbmScoringService.add_asgi_middleware(serving.BearerAuthMiddleware)
