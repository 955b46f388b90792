"""Every factor's push on the account page: the model inputs stored at ranking time, re-explained.

A ranking run stores, per account, the values the model saw (:func:`model_inputs`, JSON text in
the details table's ``model_inputs`` column). When the pages run inside ``abm-ml serve`` the
served scorer is in the same process; if its version is the one that issued the run, the
account page re-explains the stored inputs with :meth:`AccountScorer.explain` (the one
explanation path of the CLI's ``explain`` and the API's ``/explain``), so the waterfall starts
at the average training account and its steps add up exactly to the stored propensity.
Otherwise the page falls back to the factors stored with the run and says why.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from abm_ml.errors import AbmInputError
from abm_ml.jsontext import rows_json
from abm_ml.schema import ACCOUNT_ID, ROW_ID

if TYPE_CHECKING:
    from abm_ml.modeling.scorer import AccountScorer

INPUTS_COLUMN = "model_inputs"
"""Column of the ranked frame (and of the details table) holding each account's inputs as JSON."""

ServedModel = Callable[[], "tuple[AccountScorer | None, str | None]"]
"""Returns the scorer served in this process and its registry version (None, None: no model)."""


def model_inputs(scorer: AccountScorer, accounts: pd.DataFrame) -> pd.Series:
    """Each account's model inputs as JSON text, indexed by account id.

    The accounts are parsed as the ranker parsed them (the scorer's carried input spec), and
    the values are the ones :meth:`AccountScorer.explain` reports (categories as text, numbers
    as numbers, missing as null), keyed by feature name; parsing them again changes nothing.

    Args:
        scorer: The scorer that ranked the accounts.
        accounts: The accounts as given to :func:`abm_ml.modeling.ranking.rank_accounts`.

    Returns:
        JSON text per account id (duplicate ids keep their first row).
    """
    prepared = scorer.prepare(accounts)
    frame = prepared.frame if prepared is not None else accounts.reset_index(drop=True)
    if ACCOUNT_ID in frame.columns:
        ids = frame[ACCOUNT_ID]
    elif ROW_ID in frame.columns:
        ids = frame[ROW_ID]
    else:
        ids = pd.Series(np.arange(len(frame)), index=frame.index)
    out = pd.Series(record_inputs(scorer, frame), index=ids.astype(str).to_numpy(), dtype=object)
    return out[~out.index.duplicated()]


def record_inputs(scorer: AccountScorer, records: pd.DataFrame) -> list[str]:
    """Each record's model inputs as JSON text, in row order: what a ranking run stores.

    Args:
        scorer: The scorer that ranked the records.
        records: The records as the scorer scored them (:meth:`AccountScorer.prepare`'s frame
            when it carries an input spec).
    """
    return inputs_json(scorer.preprocessor.raw_values(records))


def inputs_json(values: pd.DataFrame) -> list[str]:
    """One JSON object per row of feature values (missing as null), in row order."""
    if values.empty:
        return []
    names = [str(name) for name in values.columns]
    return rows_json(names, (values[name].tolist() for name in values.columns))


def with_model_inputs(
    ranked: pd.DataFrame, scorer: AccountScorer, accounts: pd.DataFrame
) -> pd.DataFrame:
    """``ranked`` with the :data:`INPUTS_COLUMN` of each of its accounts (see :func:`model_inputs`)."""
    inputs = model_inputs(scorer, accounts)
    keys = ranked["account_id"].astype(str) if "account_id" in ranked.columns else pd.Series([])
    where = pd.Index(inputs.index).get_indexer(keys)
    column = np.append(inputs.to_numpy(dtype=object), None)[where]
    return ranked.assign(**{INPUTS_COLUMN: column})


@dataclass
class Waterfall:
    """One account's explanation for the page: start, one step per feature, end."""

    source: str
    """``"model"`` (re-explained by the served scorer) or ``"stored"`` (the run's factors)."""
    why: str | None = None
    """Why the stored factors are shown instead of every feature's push."""
    base: float | None = None
    propensity: float | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)


def explain_inputs(scorer: AccountScorer, inputs_json: str) -> Waterfall:
    """Every feature's push for one account's stored inputs, strongest first.

    Each step carries ``start`` and ``end`` (the running propensity before and after it), so
    the template draws a waterfall; ``base + sum(points) == propensity`` exactly.
    """
    record = pd.DataFrame([json.loads(inputs_json)])
    explained = scorer.explain(record)
    factors = explained.factors(0)
    base = float(explained.base_probability[0])
    steps, running = [], base
    for row in factors.itertuples(index=False):
        points = float(row.probability_points)
        steps.append(
            {
                "feature": row.feature,
                "value": row.value,
                "text": row.text,
                "points": points,
                "start": running,
                "end": running + points,
            }
        )
        running += points
    return Waterfall(
        source="model", base=base, propensity=float(explained.propensity[0]), steps=steps
    )


def account_waterfall(
    served: ServedModel | None, run_version: str, inputs_json: str | None
) -> Waterfall:
    """The waterfall of an account in a run, or why the page shows the stored factors instead."""
    if not inputs_json:
        return Waterfall(
            "stored", why="this run stored no model inputs (ranked before the pages kept them)"
        )
    scorer, version = served() if served is not None else (None, None)
    if scorer is None:
        return Waterfall(
            "stored", why="no model is served in this process (the pages run outside abm-ml serve)"
        )
    if str(version) != str(run_version):
        return Waterfall(
            "stored",
            why=f"the served model is v{version}, the run was ranked by v{run_version}: "
            "re-explaining with another model would not match the stored score",
        )
    try:
        return explain_inputs(scorer, inputs_json)
    except (ValueError, TypeError, AbmInputError) as error:
        # A damaged row must cost the waterfall, not the page.
        return Waterfall("stored", why=f"the stored model inputs cannot be read ({error})")
