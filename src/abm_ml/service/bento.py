"""BentoML service scoring target accounts: declarations, endpoints and access only.

One service runs under ``bentoml serve``: ``AbmScoringService``, a FastAPI app mounted on
BentoML with ``/score``, ``/rank``, ``/explain`` and ``/metadata`` (BentoML adds ``/healthz``,
``/readyz``, ``/metrics`` and the OpenAPI document ``/docs.json``). Each worker process (one per
core by default) loads the ``AccountScorer`` from the Bento model declared at class scope and
scores in process: a one-record request takes the scorer's one-record path, and no request
crosses a socket to a separate model process, which cost more than batching gained once a
record scores in well under a millisecond (bench/bench_service.py measures both). It
validates each request against the model's features and answers 400/413/422 itself; with
``ABM_ML_API_TOKEN`` set, every path but ``/healthz`` needs ``Authorization: Bearer <token>``; a
body over ``ABM_ML_MAX_BODY_BYTES`` is refused (413) before it is read
(:mod:`abm_ml.service.limits`).

Request handling lives in :mod:`abm_ml.service.handlers`, the input contract in
:mod:`~abm_ml.service.contract`, the response models in :mod:`~abm_ml.service.responses`;
see serving/README.md for settings.
"""

from __future__ import annotations

import gc
import logging
from typing import TYPE_CHECKING, Any

import anyio
import bentoml
from fastapi import FastAPI, Request
from pydantic import BaseModel
from starlette.responses import Response

from abm_ml.errors import AbmInputError
from abm_ml.service import handlers, responses
from abm_ml.service.auth import BearerAuthMiddleware
from abm_ml.service.contract import Kind, RecordSchema, ServingError, field_error
from abm_ml.service.deploy import DeployedModel, load_scorer
from abm_ml.service.limits import BodyLimitMiddleware
from abm_ml.service.settings import ENV_BENTO_MODEL, ServiceConfig, Settings, bento_model_tag
from abm_ml.web import create_app as create_web_app

if TYPE_CHECKING:
    from abm_ml.modeling.scorer import AccountScorer

logger = logging.getLogger(__name__)

INLINE_RECORDS = 16
"""Requests with at most this many records are scored on the event loop (well under a
millisecond each); larger ones in a thread, so health checks and small requests are not held up."""

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


@bentoml.service(
    name="abm_scoring",
    workers=CONFIG.workers,
    traffic={"timeout": CONFIG.timeout_s},
    metrics={"enabled": CONFIG.metrics},
    logging={"access": {"enabled": CONFIG.access_log}},
    tracing=CONFIG.tracing_config(),
)
@bentoml.asgi_app(app, path="/")
class AbmScoringService:
    """Scores, ranks and explains B2B target accounts with the deployed abm-ml model."""

    bento_model = BENTO_MODEL

    def __init__(self) -> None:
        self.frontend = handlers.Frontend(MODEL, Settings.from_env(), SCHEMA)
        # A model that cannot be read leaves the service up and not ready (/readyz 503, calls
        # 503) rather than crash-looping behind a live /healthz; `abm-ml serve` refuses it first.
        self.scorer: AccountScorer | None = None
        try:
            self.scorer = load_scorer(self.bento_model)
        except AbmInputError as exc:
            logger.error("the model cannot be loaded; the service stays not ready: %s", exc)
        _SERVED["scorer"] = self.scorer  # web pages: the account page's waterfall uses it
        # Everything alive now (MLflow, pandas, scikit-learn, the model) lives as long as the
        # worker. Left in the collector's oldest generation, it makes each full collection
        # walk ~290k objects: ~170 ms that an unlucky request waits (measured here). Frozen,
        # full collections walk only what requests create.
        gc.freeze()

    def __is_ready__(self) -> bool:
        return self.scorer is not None

    async def _rows(self, kind: Kind, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The scorer's rows for validated records, in process (see :data:`INLINE_RECORDS`)."""
        scorer = self.scorer
        if scorer is None:
            raise ServingError(503, "the model is not available (not loaded); retry later")
        call = handlers.explain_rows if kind == "explain" else handlers.score_rows
        if len(records) <= INLINE_RECORDS:
            return call(scorer, records)
        return await anyio.to_thread.run_sync(call, scorer, records)

    async def call(self, request: Request, kind: Kind) -> Response:
        """Parse, validate, score and answer one request of ``kind`` (every outcome a body)."""
        try:
            parsed = self.frontend.parse(await request.body(), kind)
            rows = await self._rows(kind, parsed.records)
            if kind == "explain":
                return _json(self.frontend.explain_body(parsed, rows))
            if kind == "rank":
                return _json(self.frontend.rank_body(parsed, rows))
            return _json(self.frontend.score_body(parsed, rows))
        except ServingError as exc:
            return _error(exc.status, str(exc), exc.errors)
        except AbmInputError as exc:  # any other refusal of the input: a 422 naming the field
            return _error(422, str(exc), [field_error(None, exc.field, str(exc), "value_error")])
        except Exception:  # a bug, still answered in the documented shape (and logged)
            logger.exception("%s request failed", kind)
            return _error(500, "internal error; see the server log")


# The endpoints are module-level coroutines, not methods of the service class: BentoML gives a
# method route its ``self`` through a synchronous FastAPI dependency, which FastAPI runs in a
# thread pool, one thread hop per request (a sixth of a worker's time at 8 clients, measured
# with py-spy). The instance is BentoML's current service, the one this worker created
# (looked up once here: ``bentoml.<name>`` goes through the package's lazy ``__getattr__``).
_current_service = bentoml.get_current_service


def _service() -> AbmScoringService:
    return _current_service()


@app.post(
    "/score",
    summary="Score 1..N accounts",
    openapi_extra=responses.openapi_extra(SCHEMA, "score", responses.ScoreResponse, SETTINGS),
)
async def score(request: Request) -> Response:
    """Per record: propensity, score, tier, days to close (P10/P50/P90), expected value, priority, reasons."""
    return await _service().call(request, "score")


@app.post(
    "/rank",
    summary="Rank accounts",
    openapi_extra=responses.openapi_extra(SCHEMA, "rank", responses.RankResponse, SETTINGS),
)
async def rank(request: Request) -> Response:
    """Scores sorted by `sort_by` (priority by default; or propensity, expected_value), with rank; `top` keeps the first N."""
    return await _service().call(request, "rank")


@app.post(
    "/explain",
    summary="Explain accounts",
    openapi_extra=responses.openapi_extra(SCHEMA, "explain", responses.ExplainResponse, SETTINGS),
)
async def explain(request: Request) -> Response:
    """Every feature's SHAP contribution to the log-odds of the uncalibrated model, with the base value."""
    return await _service().call(request, "explain")


@app.get(
    "/metadata",
    summary="Model and input contract",
    openapi_extra={"responses": {"200": responses.response_docs(responses.MetadataResponse)}},
)
async def metadata() -> Response:
    """Model name, version, alias, training date, headline metrics and the expected input schema."""
    return _json(_service().frontend.metadata())


# Starlette runs the first middleware added outermost: the token is checked before a byte of
# the body is read, then the body is read only up to ABM_ML_MAX_BODY_BYTES.
AbmScoringService.add_asgi_middleware(BearerAuthMiddleware)
AbmScoringService.add_asgi_middleware(BodyLimitMiddleware)

# --- web pages (issue 18): the pages for sales ops at "/", a self-contained ASGI app that
# answers only its own paths (abm_ml.web.paths), so the API and /docs.json are untouched.
# The account page re-explains a run's stored inputs with this worker's own scorer (same
# process, no second copy of the model) when the served version is the one that ranked the run.
_SERVED: dict[str, AccountScorer | None] = {"scorer": None}


def _served() -> tuple[AccountScorer | None, str | None]:
    return _SERVED["scorer"], MODEL.version


AbmScoringService.mount_asgi_app(create_web_app(served=_served), path="/", name="web")
# --- end web pages ---
