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

import contextlib
import functools
import gc
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
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

    @functools.cached_property
    def raw(self) -> np.ndarray:
        # Once: the scorer's propensity and the reasons' effects both start from it.
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
    """Column indices of the k largest (or smallest) values per row, strongest first.

    Ties go to the lower column index, as a stable sort would order them. On many rows a few
    passes of ``argmax`` beat a partition plus a sort when k is small next to the columns
    (3 reasons of 48 features); a few rows, or a large k, are sorted.
    """
    n, m = values.shape
    k = min(k, m)
    if k <= 0:
        return np.empty((n, 0), dtype=np.intp)
    if 4 * k > m or n <= 16:
        return np.argsort(-values if largest else values, axis=1, kind="stable")[:, :k]
    work = np.array(values, dtype=float) if largest else -values.astype(float)
    rows = np.arange(n)
    out = np.empty((n, k), dtype=np.intp)
    for i in range(k):
        best = work.argmax(axis=1)
        out[:, i] = best
        work[rows, best] = -np.inf
    return out


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


SMALL_COLUMN = 64
"""Up to this many values of a feature are worded one by one; more are worded per distinct value."""


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

    Everything but the final dicts is computed on arrays (:func:`reason_table`).

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
    if contrib.values.shape[0] == 1:
        return [_one_row(contrib, raw_values, features, k_up, k_down, effect, effect_unit)]
    table = reason_table(
        contrib,
        raw_values,
        features,
        k_up=k_up,
        k_down=k_down,
        effect=effect,
        effect_unit=effect_unit,
    )
    return table.entries()


@dataclass(frozen=True)
class ReasonTable:
    """Every row's reasons as (rows, slots) arrays: the ``k_up`` raising slots, then the
    lowering ones, strongest first; a slot is a reason where ``valid``.

    :meth:`entries` makes the JSON-ready dicts; :meth:`texts` the one-line texts of lists
    and CSVs without them (a million accounts' dicts cost more than their TreeSHAP's tail).
    """

    feature: np.ndarray
    shown: np.ndarray
    contribution: np.ndarray
    effect: np.ndarray
    text: np.ndarray
    valid: np.ndarray
    n_up: int
    effect_unit: str

    def entries(self) -> list[dict[str, list[dict]]]:
        """``{"up": [...], "down": [...]}`` per row, each reason a dict."""
        with _collector_paused(len(self.valid) > SMALL_COLUMN):
            return _entries(
                self.feature,
                self.shown,
                self.contribution,
                self.effect,
                self.text,
                self.valid,
                self.n_up,
                self.effect_unit,
            )

    def texts(self, *, up: bool = True, down: bool = True) -> np.ndarray:
        """Per row, the chosen sides' reasons as one text for tables and CSVs:
        '+ 12 web visits in the last 30 days; - No economic buyer in CRM' (raising ones
        first, each side strongest first; empty without a reason)."""
        n, slots = self.valid.shape
        out = np.full(n, "", dtype=object)
        started = np.zeros(n, dtype=bool)
        for s in range(slots):
            raising = s < self.n_up
            if not (up if raising else down):
                continue
            rows = np.flatnonzero(self.valid[:, s])
            marked = ("+ " if raising else "- ") + self.text[rows, s]
            out[rows] = np.where(started[rows], out[rows] + "; " + marked, marked)
            started[rows] = True
        return out


def reason_table(
    contrib: Contributions,
    raw_values: Mapping[str, Any] | pd.DataFrame,
    features: list[FeatureInfo],
    *,
    k_up: int = 3,
    k_down: int = 1,
    effect: Callable[[np.ndarray, np.ndarray], np.ndarray],
    effect_unit: str,
) -> ReasonTable:
    """:func:`reasons` as arrays: the chosen features, their contributions and effects for
    every (row, reason) at once, and the wording once per distinct (feature, value) of the
    features that end up in a reason. Arguments as for :func:`reasons`.
    """
    by_name = {f.name: f for f in features}
    names = contrib.feature_names
    values = contrib.values
    n = values.shape[0]
    up = top_indices(values, k_up, largest=True)
    down = top_indices(values, k_down, largest=False)
    n_up = up.shape[1]
    # Slots: the k_up raising reasons, then the k_down lowering ones, strongest first.
    idx = np.concatenate([up, down], axis=1)
    c = values[np.arange(n)[:, None], idx]
    sign = np.concatenate([np.ones(n_up), -np.ones(down.shape[1])])
    valid = c * sign > 0
    # Effects for every (row, reason) at once: calling the calibrator per reason is the slow part.
    with_c = np.repeat(contrib.raw[:, None], idx.shape[1], axis=1)
    eff = np.asarray(effect(with_c.ravel(), (with_c - c).ravel())).reshape(idx.shape)
    shown, text = _words(idx, valid, names, raw_values, by_name)
    feature = np.asarray(names, dtype=object)[idx]
    return ReasonTable(feature, shown, c, eff, text, valid, n_up, effect_unit)


def _one_row(
    contrib: Contributions,
    raw_values: Mapping[str, Any] | pd.DataFrame,
    features: list[FeatureInfo],
    k_up: int,
    k_down: int,
    effect: Callable[[np.ndarray, np.ndarray], np.ndarray],
    effect_unit: str,
) -> dict[str, list[dict]]:
    """:func:`reasons` of one row (the one-record path) in plain Python, with the same result.

    On 48 floats, Python lists beat numpy calls made for many rows (each costs a microsecond
    or more whatever its size). Only the slots that make a reason are computed: the top
    ``k_up`` of all contributions that are positive are the top ``k_up`` positive ones, ties
    to the lower column as :func:`top_indices` breaks them (Python's sort is stable, also in
    reverse).
    """
    row = contrib.values[0].tolist()
    positive = [j for j, x in enumerate(row) if x > 0]
    negative = [j for j, x in enumerate(row) if x < 0]
    chosen = [
        *sorted(positive, key=row.__getitem__, reverse=True)[: max(k_up, 0)],
        *sorted(negative, key=row.__getitem__)[: max(k_down, 0)],
    ]
    n_up = min(len(positive), max(k_up, 0))
    if not chosen:
        return {"up": [], "down": []}
    raw = float(contrib.raw[0])
    # One call for every reason (the calibrator or expm1 on a few values), as the array path.
    c = [row[j] for j in chosen]
    eff = np.asarray(effect(np.full(len(c), raw), raw - np.asarray(c))).tolist()
    names = contrib.feature_names
    entries = []
    for j, x, e in zip(chosen, c, eff):
        name = names[j]
        feature = features[j] if j < len(features) and features[j].name == name else None
        if feature is None:  # contributions in another order than the features
            feature = next(f for f in features if f.name == name)
        value = _first(raw_values[name])
        entries.append(
            {
                "feature": name,
                "value": display_value(value),
                "contribution": x,
                effect_unit: e,
                "text": reason_text(feature, value),
            }
        )
    return {"up": entries[:n_up], "down": entries[n_up:]}


def _first(column: Any) -> object:
    """The first value of a one-row column (a list as the one-record path gives, or a Series)."""
    if isinstance(column, list):
        return column[0]  # what np.asarray(column, dtype=object)[0] gives, without the array
    return np.asarray(column, dtype=object)[0]


@contextlib.contextmanager
def _collector_paused(pause: bool) -> Iterator[None]:
    """Python's cyclic garbage collector off while many small reason lists are made.

    Hundreds of thousands of new lists trigger collections that scan every live object again
    and again: 60 % of building the reasons of a 50k-row chunk. Nothing made here is cyclic.
    Only the thread that turned it off turns it back on.
    """
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _entries(
    feature: np.ndarray,
    shown: np.ndarray,
    c: np.ndarray,
    eff: np.ndarray,
    text: np.ndarray,
    valid: np.ndarray,
    n_up: int,
    effect_unit: str,
) -> list[dict[str, list[dict]]]:
    """The JSON-ready entries from (rows, slots) arrays: the k_up slots up, then the down ones."""
    n = len(valid)
    slots = [
        [
            {"feature": f, "value": v, "contribution": x, effect_unit: e, "text": t} if ok else None
            for f, v, x, e, t, ok in zip(
                feature[:, s].tolist(),
                shown[:, s].tolist(),
                c[:, s].tolist(),
                eff[:, s].tolist(),
                text[:, s].tolist(),
                valid[:, s].tolist(),
            )
        ]
        for s in range(valid.shape[1])
    ]
    ups = list(zip(*slots[:n_up])) if n_up else [()] * n
    downs = list(zip(*slots[n_up:])) if valid.shape[1] > n_up else [()] * n
    return [
        {"up": [r for r in u if r is not None], "down": [r for r in d if r is not None]}
        for u, d in zip(ups, downs)
    ]


def _words(
    idx: np.ndarray,
    valid: np.ndarray,
    names: Sequence[str],
    raw_values: Mapping[str, Any] | pd.DataFrame,
    by_name: Mapping[str, FeatureInfo],
) -> tuple[np.ndarray, np.ndarray]:
    """(display value, sentence) of each valid (row, slot) of ``idx``, as object arrays."""
    shown = np.full(idx.shape, None, dtype=object)
    text = np.full(idx.shape, None, dtype=object)
    rows, slots = np.nonzero(valid)
    if len(rows) <= SMALL_COLUMN:
        # A few reasons (one record): worded one by one, without per-feature array work.
        worded: dict[tuple, tuple[object, str]] = {}
        columns: dict[str, np.ndarray] = {}
        for r, s in zip(rows.tolist(), slots.tolist()):
            name = names[idx[r, s]]
            column = columns.get(name)
            if column is None:
                column = columns[name] = np.asarray(raw_values[name], dtype=object)
            value = column[r]
            key = (name, *_value_key(value))
            found = worded.get(key)
            if found is None:
                found = worded[key] = (display_value(value), reason_text(by_name[name], value))
            shown[r, s], text[r, s] = found
        return shown, text
    chosen = idx[rows, slots]
    for j in np.unique(chosen).tolist():
        at = chosen == j
        r, s = rows[at], slots[at]
        column = raw_values[names[j]]
        shown[r, s], text[r, s] = _word_values(by_name[names[j]], column, r)
    return shown, text


def _value_key(value: object) -> tuple:
    """What makes two values read the same: missing is missing, else type and value.

    The type keeps 1, 1.0 and True apart, which == and hash do not; -0.0 == 0.0, but their
    texts differ.
    """
    if _is_missing(value):
        return (None,)
    if isinstance(value, float) and value == 0:
        return ("zero", math.copysign(1.0, value))
    return (type(value), value)


def _word_values(
    feature: FeatureInfo, column: Any, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`display_value` and :func:`reason_text` of ``column[rows]``, each value worded once.

    Values repeat (categories, yes/no, round counts), so each distinct value is worded once:
    floats by their bits (so -0.0 and 0.0 stay apart, as their texts differ), text by
    :func:`pandas.factorize`, anything else by :func:`_value_key`.
    """
    many = len(rows) > SMALL_COLUMN
    array = np.asarray(column) if many else None
    if array is not None and array.dtype.kind == "f":
        picked = array[rows].astype(np.float64)
        bits, codes = np.unique(picked.view(np.int64), return_inverse=True)
        distinct = bits.view(np.float64).tolist()
    else:
        picked = np.asarray(column, dtype=object)[rows]
        if many and pd.api.types.infer_dtype(picked, skipna=True) == "string":
            codes, uniques = pd.factorize(picked, use_na_sentinel=True)
            distinct = [*uniques.tolist(), None]  # code -1 (missing) is the last one
        else:
            seen: dict[tuple, int] = {}
            distinct, codes = [], np.empty(len(picked), dtype=np.intp)
            for i, value in enumerate(picked.tolist()):
                key = _value_key(value)
                code = seen.get(key)
                if code is None:
                    code = seen[key] = len(distinct)
                    distinct.append(value)
                codes[i] = code
    shown = np.empty(len(distinct), dtype=object)
    text = np.empty(len(distinct), dtype=object)
    for i, value in enumerate(distinct):
        shown[i] = display_value(value)
        text[i] = reason_text(feature, value)
    return shown[codes], text[codes]
