"""Handling a request: call the scorer, rank, and build the response body.

* **The model side.** :func:`score_rows` and :func:`explain_rows` wrap
  :meth:`AccountScorer.score <abm_ml.modeling.scorer.AccountScorer.score>` (or its one-record
  twin :meth:`~abm_ml.modeling.scorer.AccountScorer.score_record`) and
  :meth:`~abm_ml.modeling.scorer.AccountScorer.explain` on validated records: scoring logic
  exists once, in the scorer. A record the scorer fails on fails alone.
* **The public side.** :class:`Frontend` parses a request against the input contract and
  builds each response in the shape of its documented model (:mod:`abm_ml.service.responses`);
  ``/rank`` orders with
  :func:`abm_ml.modeling.ranking.rank_order`, the ranking of ``abm-ml rank``.

Nothing here depends on the web framework or imports BentoML or MLflow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from abm_ml.modeling.ranking import check_sort_key, rank_order
from abm_ml.schema import ACCOUNT_ID
from abm_ml.service.contract import (
    MAX_REPORTED_ERRORS,
    Kind,
    RecordSchema,
    ServingError,
    ValidatedRequest,
    field_error,
    records_frame,
)
from abm_ml.service.responses import EXPLAINS, MetadataResponse, json_safe
from abm_ml.service.settings import Settings

if TYPE_CHECKING:
    from abm_ml.modeling.feature_info import FeatureInfo
    from abm_ml.modeling.scorer import AccountScorer
    from abm_ml.service.deploy import DeployedModel

logger = logging.getLogger(__name__)

ERROR_KEY = "__error__"
"""Key of the result of a record the scorer failed on (the model side answers, the frontend refuses)."""

# --------------------------------------------------------------------------------------------
# The model side: calling the scorer
# --------------------------------------------------------------------------------------------


def _one_by_one(
    rows: Sequence[Mapping[str, Any]],
    features: Sequence[FeatureInfo],
    call: Callable[[pd.DataFrame], list[dict[str, Any]]],
    what: str,
) -> list[dict[str, Any]]:
    """Score the whole batch; if that fails, each record alone so one bad record fails alone."""
    frame = records_frame(rows, features)
    try:
        return call(frame)
    except Exception:
        logger.exception(
            "%s of a batch of %d records failed; retrying record by record", what, len(rows)
        )
    out: list[dict[str, Any]] = []
    for i in range(len(frame)):
        try:
            out.extend(call(frame.iloc[[i]].reset_index(drop=True)))
        except Exception as exc:
            logger.exception("%s of one record failed", what)
            out.append({ERROR_KEY: f"{what} failed: {type(exc).__name__}: {exc}"})
    return out


def score_rows(
    scorer: AccountScorer, rows: Sequence[Mapping[str, Any]], *, k_up: int = 3, k_down: int = 1
) -> list[dict[str, Any]]:
    """:meth:`AccountScorer.score` on validated records; one JSON-ready dict per record, in order.

    A record the scorer fails on gets ``{"__error__": ...}`` instead of failing its batch.
    """
    if not rows:
        return []
    if len(rows) == 1:
        # One record: the scorer's one-record path, the same numbers without a DataFrame.
        try:
            row = scorer.score_record(rows[0], k_up=k_up, k_down=k_down)
        except Exception as exc:
            logger.exception("scoring of one record failed")
            return [{ERROR_KEY: f"scoring failed: {type(exc).__name__}: {exc}"}]
        return [json_safe({"reasons": None, "velocity_reasons": None, **row})]

    def call(frame: pd.DataFrame) -> list[dict[str, Any]]:
        scored = scorer.score(frame, k_up=k_up, k_down=k_down)
        return [
            json_safe({"reasons": None, "velocity_reasons": None, **row})
            for row in scored.to_dict(orient="records")
        ]

    return _one_by_one(rows, scorer.features, call, "scoring")


def explain_rows(scorer: AccountScorer, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """:meth:`AccountScorer.explain` on validated records: every feature's contribution."""
    from abm_ml.modeling.reasons import display_value

    if not rows:
        return []

    def call(frame: pd.DataFrame) -> list[dict[str, Any]]:
        explained = scorer.explain(frame)
        names = [f.name for f in explained.features]
        return [
            json_safe(
                {
                    "account_id": str(frame[ACCOUNT_ID].iloc[i]),
                    "base_value": explained.base_log_odds[i],
                    "raw_log_odds": explained.raw_log_odds[i],
                    "base_probability": explained.base_probability[i],
                    "propensity": explained.propensity[i],
                    "contributions": dict(zip(names, explained.contributions[i])),
                    "probability_points": dict(zip(names, explained.probability_points[i])),
                    "values": {
                        name: display_value(explained.values[name].iloc[i]) for name in names
                    },
                }
            )
            for i in range(len(frame))
        ]

    return _one_by_one(rows, scorer.features, call, "explaining")


# --------------------------------------------------------------------------------------------
# The public side: requests in, documented responses out
# --------------------------------------------------------------------------------------------


def rank_results(
    results: Sequence[Mapping[str, Any]], *, sort_by: str = "priority", top: int | None = None
) -> list[dict[str, Any]]:
    """Results in the order of :func:`abm_ml.modeling.ranking.rank_order`, with ``rank`` from 1.

    Raises:
        AbmInputError: ``sort_by`` is not one of :data:`abm_ml.modeling.ranking.SORT_KEYS`.
    """
    check_sort_key(sort_by)

    def column(name: str) -> list[float]:
        return [np.nan if r.get(name) is None else r[name] for r in results]

    order = rank_order(column(sort_by), column("propensity"))
    if top is not None:
        order = order[:top]
    return [{**results[i], "rank": r} for r, i in enumerate(order, start=1)]


class Frontend:
    """Request handling of the public service, independent of the web framework.

    Args:
        model: what the service serves (labels and metadata of the Bento model).
        settings: request limits.
        schema: the input contract, when already built for ``model`` (it is rebuilt when its
            ``ignore_unknown_fields`` differs from the settings').
    """

    def __init__(
        self, model: DeployedModel, settings: Settings, schema: RecordSchema | None = None
    ):
        self.model = model
        self.settings = settings
        if schema is None or schema.ignore_unknown_fields != settings.ignore_unknown_fields:
            schema = RecordSchema(
                model.features, ignore_unknown_fields=settings.ignore_unknown_fields
            )
        self.schema = schema

    def parse(self, body: bytes, kind: Kind) -> ValidatedRequest:
        """Validate a raw request body (see :meth:`RecordSchema.parse_request`)."""
        return self.schema.parse_request(body, self.settings, kind=kind)

    def _results(
        self, rows: Sequence[Mapping[str, Any]], expected: int, *, with_model: bool = True
    ) -> list[dict[str, Any]]:
        """The runner's rows, checked (one per record, none failed), with the model's name."""
        if len(rows) != expected:
            raise ServingError(
                500, f"the model returned {len(rows)} results for {expected} records"
            )
        bad = [i for i, r in enumerate(rows) if ERROR_KEY in r]
        if bad:
            raise ServingError(
                500,
                f"the model failed on record {bad[0]}: {rows[bad[0]][ERROR_KEY]}",
                [
                    field_error(i, None, str(rows[i][ERROR_KEY]), "model_error")
                    for i in bad[:MAX_REPORTED_ERRORS]
                ],
            )
        if not with_model:
            return [dict(r) for r in rows]
        return [
            {**r, "model_name": self.model.name, "model_version": self.model.version} for r in rows
        ]

    def score_body(
        self, request: ValidatedRequest, rows: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        """The ``/score`` answer (:class:`~abm_ml.service.responses.ScoreResponse`): one result per record, in input order."""
        results = self._results(rows, len(request.records))
        return {"model": self.model.ref(), "count": len(results), "results": results}

    def rank_body(
        self, request: ValidatedRequest, rows: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        """The ``/rank`` answer (:class:`~abm_ml.service.responses.RankResponse`): results in rank order, cut to ``top``."""
        results = self._results(rows, len(request.records))
        ranked = rank_results(results, sort_by=request.sort_by, top=request.top)
        return {
            "model": self.model.ref(),
            "sort_by": request.sort_by,
            "total": len(results),
            "count": len(ranked),
            "results": ranked,
        }

    def explain_body(
        self, request: ValidatedRequest, rows: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        """The ``/explain`` answer (:class:`~abm_ml.service.responses.ExplainResponse`): every feature's contribution."""
        results = self._results(rows, len(request.records), with_model=False)
        return {
            "model": self.model.ref(),
            "explains": EXPLAINS,
            "count": len(results),
            "results": results,
        }

    def metadata(self) -> MetadataResponse:
        """The ``/metadata`` answer: the model, its lineage and the input contract."""
        m = self.model
        return MetadataResponse(
            model_name=m.name,
            model_version=m.version,
            alias=m.alias,
            trained_at=m.trained_at,
            dataset=m.dataset,
            calibration=m.calibration,
            metrics=m.metrics,
            mlflow_run_id=m.run_id,
            bento_model=m.tag,
            deployed_at=m.deployed_at,
            features=[{k: f.get(k) for k in ("name", "type", "description")} for f in m.features],
            input_schema=self.schema.json_schema(),
            max_records=self.settings.max_records,
            ignore_unknown_fields=self.settings.ignore_unknown_fields,
            explains=EXPLAINS,
        )
