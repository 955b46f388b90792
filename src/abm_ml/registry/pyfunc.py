"""The packaged scorer: how an :class:`~abm_ml.modeling.scorer.AccountScorer` is saved, found and
read back (:func:`save_scorer`, :func:`read_scorer`), and the MLflow pyfunc that wraps it.

It takes raw account records (categories as strings, numbers as numbers; any feature may be
absent) and applies the fitted preprocessing itself, so MLflow's conversion of input examples
to strings can never meet LightGBM's category codes. The signature declares every feature as
an optional column and the reason count as a parameter.
"""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from abm_ml.errors import AbmInputError
from abm_ml.modeling.scorer import AccountScorer

SCORER_ARTIFACT = "scorer"


class AccountScorerModel(mlflow.pyfunc.PythonModel):
    """``predict`` returns one row per record: propensity, score, tier, days, value, reasons."""

    def load_context(self, context) -> None:
        self.scorer: AccountScorer = read_scorer(context.artifacts[SCORER_ARTIFACT])

    def predict(
        self, context, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        params = params or {}
        scored = self.scorer.score(
            model_input,
            k_up=int(params.get("top_k_reasons", 3)),
            k_down=int(params.get("top_k_down", 1)),
            with_reasons=bool(params.get("with_reasons", True)),
        )
        return to_json_columns(scored)


def to_json_columns(scored: pd.DataFrame) -> pd.DataFrame:
    """Reasons as JSON text, so the output is a flat table any MLflow flavour can carry."""
    out = scored.copy()
    for column in ("reasons", "velocity_reasons"):
        if column in out.columns:
            out[column] = [json.dumps(v) for v in out[column]]
    return out


def input_signature(scorer: AccountScorer) -> Schema:
    cols = [
        ColSpec("string", "account_id", required=False),
        ColSpec("double", "amount", required=False),
    ]
    for feature in scorer.features:
        kind = "string" if feature.type == "categorical" else "double"
        cols.append(ColSpec(kind, feature.name, required=False))
    return Schema(cols)


def output_signature(scorer: AccountScorer) -> Schema:
    cols = [
        ColSpec("string", "account_id"),
        ColSpec("double", "propensity"),
        ColSpec("long", "score"),
        ColSpec("string", "tier"),
        ColSpec("double", "days_to_close_p10"),
        ColSpec("double", "days_to_close_p50"),
        ColSpec("double", "days_to_close_p90"),
        ColSpec("double", "amount"),
        ColSpec("double", "expected_value"),
        ColSpec("double", "priority"),
        ColSpec("string", "reasons"),
    ]
    if scorer.velocity is not None:
        cols.append(ColSpec("string", "velocity_reasons"))
    return Schema(cols)


def signature(scorer: AccountScorer) -> ModelSignature:
    params = ParamSchema(
        [
            ParamSpec("top_k_reasons", "long", 3),
            ParamSpec("top_k_down", "long", 1),
            ParamSpec("with_reasons", "boolean", True),
        ]
    )
    return ModelSignature(
        inputs=input_signature(scorer), outputs=output_signature(scorer), params=params
    )


def input_example(scorer: AccountScorer, records: pd.DataFrame, n: int = 3) -> pd.DataFrame:
    """Raw records as a CRM sends them: strings for categories, floats for numbers, ids as text."""
    example = records.head(n).reset_index(drop=True)
    out = pd.DataFrame(index=example.index)
    out["account_id"] = (
        example["account_id"].astype(str)
        if "account_id" in example
        else [f"acct-{i}" for i in range(len(example))]
    )
    out["amount"] = pd.to_numeric(example.get("amount", np.nan), errors="coerce").astype(float)
    raw = scorer.preprocessor.raw_values(example)
    for feature in scorer.features:
        if feature.type == "categorical":
            out[feature.name] = (
                raw[feature.name].astype(object).where(raw[feature.name].notna(), None)
            )
        else:
            out[feature.name] = raw[feature.name].astype(float)
    return out


SCORER_FILE = "scorer.joblib"


def save_scorer(scorer: AccountScorer, directory: Path) -> Path:
    """Write the scorer to ``directory/scorer.joblib`` (the file every package carries)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SCORER_FILE
    joblib.dump(scorer, path)
    return path


def read_scorer(location: str | Path, *, what: str | None = None) -> AccountScorer:
    """The one way to load a packaged scorer: a ``scorer.joblib`` file, or a folder holding one.

    Works on an MLflow model version downloaded to disk, a Bento model's folder, or the file.

    Args:
        location: the file, or a folder searched recursively.
        what: how to name the package in the error (defaults to the path).

    Raises:
        AbmInputError: no scorer there, or one that cannot be read.
    """
    path = Path(location)
    found = [path] if path.is_file() else sorted(path.rglob(SCORER_FILE))
    if not found:
        raise AbmInputError(f"{what or path} carries no {SCORER_FILE}", field="model")
    try:
        scorer = joblib.load(found[0])
    except Exception as error:  # noqa: BLE001 - unpickling raises anything a broken file holds
        raise AbmInputError(
            f"{what or found[0]}: the scorer cannot be read ({type(error).__name__}: {error})",
            field="model",
        ) from None
    if not isinstance(scorer, AccountScorer):
        raise AbmInputError(
            f"{what or found[0]}: {SCORER_FILE} holds a {type(scorer).__name__}, not a scorer",
            field="model",
        )
    return scorer
