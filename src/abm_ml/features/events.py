"""Event lookups for point-in-time features: sorted (account, time) keys and window counts.

Each event table is turned once into a sorted int64 key ``account_code << 33 | (seconds + 2**32)``;
a window count for many cut-offs is then two ``np.searchsorted`` calls. Times are compared at
whole-second resolution, rounding both sides down, so an event in the same second as the cut-off
is left out rather than leaked.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_SHIFT = 33
_OFFSET = 1 << 32  # lets seconds before 1970 pack without borrowing from the account bits
NEVER = -_OFFSET
NAT = np.iinfo(np.int64).min


def to_seconds(values) -> np.ndarray:
    """Datetimes to int64 seconds since 1970, floored; NaT becomes the int64 minimum."""
    ts = pd.to_datetime(values if isinstance(values, pd.Series) else pd.Series(values))
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    ns = ts.to_numpy(dtype="datetime64[ns]").view(np.int64)
    nat = ns == NAT
    secs = np.floor_divide(ns, 1_000_000_000)
    secs[nat] = NAT
    return secs


def pack_keys(codes: np.ndarray, secs: np.ndarray) -> np.ndarray:
    keys = codes.astype(np.int64)
    keys <<= _SHIFT
    shifted = np.clip(secs, -_OFFSET, _OFFSET - 1)
    shifted += _OFFSET
    keys += shifted
    return keys


def positions(values: pd.Series, keys: pd.Index) -> np.ndarray:
    """Positions of ``values`` in ``keys`` (-1 when absent), cheap for categoricals."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        raw = values.cat.codes.to_numpy()
        cats = values.cat.categories
        if cats.equals(keys):
            # Synthetic worlds share the parent keys as categories: codes are positions.
            return raw.astype(np.int32)
        cat_pos = keys.get_indexer(cats.astype(str)).astype(np.int32)
        out = np.full(len(raw), -1, dtype=np.int32)
        ok = raw >= 0
        out[ok] = cat_pos[raw[ok]]
        return out
    mask = values.isna().to_numpy()
    out = keys.get_indexer(values.astype(str)).astype(np.int32)
    out[mask] = -1
    return out


def factorize_codes(values: pd.Series) -> np.ndarray:
    """Integer codes of a categorical or text column (-1 for missing)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.codes.to_numpy().astype(np.int32)
    return pd.factorize(values)[0].astype(np.int32)


def label_positions(values: pd.Series, labels: tuple[str, ...]) -> np.ndarray:
    """Positions of enum values in ``labels`` (-1 for anything else)."""
    return positions(values, pd.Index(list(labels)))


class Events:
    """Sorted (account, time) keys of one kind of event, with optional running sums."""

    def __init__(self, codes: np.ndarray, secs: np.ndarray, weights: np.ndarray | None = None):
        ok = (codes >= 0) & (secs != NAT)
        if not ok.all():
            codes, secs = codes[ok], secs[ok]
            weights = None if weights is None else np.asarray(weights)[ok]
        del ok
        keys = pack_keys(codes, secs)
        self.cumsum = None
        if weights is None:
            # World tables come sorted by account and time; skip the sort when they are.
            if len(keys) > 1 and not (keys[1:] >= keys[:-1]).all():
                keys.sort(kind="stable")
        else:
            order = np.argsort(keys, kind="stable")
            keys = keys[order]
            w = np.nan_to_num(np.asarray(weights, dtype=np.float64)[order])
            self.cumsum = np.concatenate([[0.0], np.cumsum(w)])
        self.keys = keys

    def _bounds(self, codes: np.ndarray, lo: np.ndarray, hi: np.ndarray):
        return (
            np.searchsorted(self.keys, pack_keys(codes, lo), side="left"),
            np.searchsorted(self.keys, pack_keys(codes, hi), side="left"),
        )

    def count(self, codes: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Events of each account with ``lo <= t < hi`` (seconds)."""
        a, b = self._bounds(codes, lo, hi)
        return (b - a).astype(np.int32)

    def total(self, codes: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Sum of the weights of those events."""
        a, b = self._bounds(codes, lo, hi)
        return self.cumsum[b] - self.cumsum[a]

    def last_before(self, codes: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Seconds of the latest event before ``hi`` (NaN when none)."""
        idx = np.searchsorted(self.keys, pack_keys(codes, hi), side="left") - 1
        safe = np.maximum(idx, 0)
        found = (idx >= 0) & ((self.keys[safe] >> _SHIFT) == codes) if len(self.keys) else idx >= 0
        secs = (self.keys[safe] & ((1 << _SHIFT) - 1)) - _OFFSET if len(self.keys) else idx * 0
        return np.where(found, secs.astype(np.float64), np.nan)


def as_str(values: pd.Series) -> np.ndarray:
    """Object array of strings (None for missing) from a categorical or text column."""
    out = values.astype(object).to_numpy(copy=True)
    out[pd.isna(out)] = None
    return out
