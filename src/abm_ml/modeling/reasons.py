"""SHAP reasons for every score, in words a salesperson understands.

Contributions come from LightGBM's native TreeSHAP (``pred_contrib=True``): the same values as
``shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")``, computed inside
LightGBM without copying the trees into Python, which makes it the fast path for batch scoring.
They explain the model's raw output: log-odds of the *uncalibrated* propensity model, or log
days for the velocity model. Each reason also carries an approximate effect on the final number
(probability points or days): the change in the final output if that one contribution were
removed, all else equal.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from abm_ml.config import num_threads
from abm_ml.modeling.feature_info import FeatureInfo, is_yes


@dataclass(frozen=True)
class Contributions:
    """Per-row SHAP contributions of each feature, the base value and the raw output."""

    values: np.ndarray  # (n_rows, n_features)
    base: np.ndarray  # (n_rows,)
    feature_names: list[str]

    @property
    def raw(self) -> np.ndarray:
        return self.values.sum(axis=1) + self.base


def contributions(
    booster: lgb.Booster,
    matrix: pd.DataFrame | np.ndarray,
    feature_names: Sequence[str] | None = None,
) -> Contributions:
    """TreeSHAP contributions of ``booster`` on an already preprocessed ``matrix``.

    Args:
        booster: the LightGBM model.
        matrix: its input (a frame, or the scorer's float array).
        feature_names: the columns' names; by default the frame's columns, else the booster's.
    """
    out = np.asarray(booster.predict(matrix, pred_contrib=True, num_threads=num_threads()))
    if feature_names is None:
        feature_names = (
            matrix.columns if isinstance(matrix, pd.DataFrame) else booster.feature_name()
        )
    return Contributions(values=out[:, :-1], base=out[:, -1], feature_names=list(feature_names))


def top_indices(values: np.ndarray, k: int, *, largest: bool) -> np.ndarray:
    """Column indices of the k largest (or smallest) values per row, strongest first."""
    k = min(k, values.shape[1])
    if k <= 0:
        return np.empty((values.shape[0], 0), dtype=int)
    keyed = -values if largest else values
    part = np.argpartition(keyed, k - 1, axis=1)[:, :k]
    order = np.argsort(np.take_along_axis(keyed, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _is_missing(value: object) -> bool:
    # math.isnan: NaN of any float type (np.float64 is a float), cheaper than np.isnan per call.
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def reason_text(feature: FeatureInfo, value: object) -> str:
    """One sentence about a feature's value, from the spec's description and template."""
    if _is_missing(value):
        return (
            feature.missing_text
            or f"{feature.description[:1].upper()}{feature.description[1:]}: unknown"
        )
    if feature.type == "boolean":
        truthy = is_yes(value)
        text = feature.true_text if truthy else feature.false_text
        if text:
            return text
        return f"{'Has' if truthy else 'No'} {feature.description}"
    if feature.template:
        try:
            return feature.template.format(value=value)
        except (ValueError, TypeError, KeyError, IndexError):
            pass
    if isinstance(value, float):
        value = f"{value:,.0f}" if abs(value) >= 100 or value == int(value) else f"{value:,.2f}"
    return f"{feature.description[:1].upper()}{feature.description[1:]}: {value}"


def display_value(value: object) -> object:
    """A JSON-friendly value: None for missing, plain floats and strings."""
    if _is_missing(value):
        return None
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    return str(value) if not isinstance(value, (int, bool)) else value


def reasons(
    contrib: Contributions,
    raw_values: Mapping[str, Any] | pd.DataFrame,
    features: list[FeatureInfo],
    *,
    k_up: int = 3,
    k_down: int = 1,
    effect: Callable[[np.ndarray, np.ndarray], np.ndarray],
    effect_unit: str,
) -> list[dict[str, list[dict]]]:
    """Top factors raising and lowering each row's output, as JSON-ready dicts.

    Args:
        contrib: contributions of the rows.
        raw_values: the rows' feature values as given (original category names), same order:
            a frame, or feature name -> sequence of values. Only the columns of the features
            that end up in a reason are read.
        features: feature descriptions, in the model's column order.
        k_up: how many factors raising the output to return (only positive contributions).
        k_down: how many factors lowering it (only negative contributions).
        effect: maps (raw output, raw output without the contribution) to the effect in the
            final unit (probability points or days).
        effect_unit: name of that unit, e.g. "probability_points".
    """
    by_name = {f.name: f for f in features}
    names = contrib.feature_names
    raw = contrib.raw
    n = contrib.values.shape[0]
    # Effects for every (row, reason) at once: calling the calibrator per reason is the slow part.
    picked: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for key, k, largest in (("up", k_up, True), ("down", k_down, False)):
        idx = top_indices(contrib.values, k, largest=largest)
        c = np.take_along_axis(contrib.values, idx, axis=1)
        with_c = np.repeat(raw[:, None], idx.shape[1], axis=1)
        eff = np.asarray(effect(with_c.ravel(), (with_c - c).ravel())).reshape(idx.shape)
        picked[key] = (idx, c, eff)
    used = np.unique(np.concatenate([p[0].ravel() for p in picked.values()]))
    columns = {names[j]: np.asarray(raw_values[names[j]], dtype=object) for j in used}
    # Values repeat (categories, yes/no, round counts): each (feature, value) is worded once.
    worded: dict[tuple, tuple[object, str]] = {}

    def word(name: str, value: object) -> tuple[object, str]:
        if _is_missing(value):
            key: tuple = (name,)
        elif isinstance(value, float) and value == 0 and math.copysign(1.0, value) < 0:
            return display_value(value), reason_text(by_name[name], value)  # -0.0 == 0.0
        else:
            # The type keeps 1, 1.0 and True apart, which == and hash do not.
            key = (name, type(value), value)
        found = worded.get(key)
        if found is None:
            found = (display_value(value), reason_text(by_name[name], value))
            worded[key] = found
        return found

    out: list[dict[str, list[dict]]] = []
    for row in range(n):
        entry: dict[str, list[dict]] = {"up": [], "down": []}
        for key, sign in (("up", 1.0), ("down", -1.0)):
            idx, c, eff = picked[key]
            for j in range(idx.shape[1]):
                contribution = float(c[row, j])
                if contribution * sign <= 0:
                    continue
                name = names[idx[row, j]]
                shown, text = word(name, columns[name][row])
                entry[key].append(
                    {
                        "feature": name,
                        "value": shown,
                        "contribution": contribution,
                        effect_unit: float(eff[row, j]),
                        "text": text,
                    }
                )
        out.append(entry)
    return out


def reasons_as_text(entry: dict[str, list[dict]]) -> str:
    """'+ 12 web visits in the last 30 days; - No economic buyer in CRM' for tables and CSVs."""
    parts = [f"+ {r['text']}" for r in entry["up"]] + [f"- {r['text']}" for r in entry["down"]]
    return "; ".join(parts)
