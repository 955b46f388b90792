"""Vectorised drawing helpers of the synthetic world: category picks, ids, time conversions.

Times are drawn as float days since the world's start and turned into timestamps here, floored to
whole seconds (events) or to midnight (CRM date fields).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DAY_SECONDS = 86_400


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def format_ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    """Format integers as fixed-width ids ("A0000123") without a Python loop per id."""
    numbers = np.asarray(numbers, dtype=np.int64)
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    buf = np.empty((len(numbers), len(head) + width), dtype=np.uint8)
    buf[:, : len(head)] = head
    rest = numbers.copy()
    for pos in range(width - 1, -1, -1):
        buf[:, len(head) + pos] = ord("0") + rest % 10
        rest //= 10
    fixed = buf.view(f"S{len(head) + width}").ravel()
    return fixed.astype(f"U{len(head) + width}").astype(object)


def pick(rng: np.random.Generator, cum_p: np.ndarray, size: int) -> np.ndarray:
    """Draw category codes from one cumulative probability vector."""
    return np.searchsorted(cum_p, rng.random(size), side="right").clip(0, len(cum_p) - 1)


def pick_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """Draw one category code per row from a row-wise probability matrix."""
    cum = np.cumsum(probs, axis=1)
    cum /= cum[:, -1:]
    u = rng.random(len(probs))[:, None]
    return (u > cum).sum(axis=1).astype(np.int8)


def categorical(codes: np.ndarray, categories) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(categories))


def to_timestamps(origin: pd.Timestamp, days: np.ndarray) -> np.ndarray:
    """Convert float days since ``origin`` to datetime64[ns], floored to whole seconds."""
    secs = np.floor(np.asarray(days, dtype=np.float64) * DAY_SECONDS).astype(np.int64)
    return (origin.to_datetime64().astype("datetime64[s]") + secs.astype("timedelta64[s]")).astype(
        "datetime64[ns]"
    )


def secs_to_timestamps(origin: pd.Timestamp, secs: np.ndarray) -> np.ndarray:
    """Turn int64 seconds since ``origin`` into datetime64[ns] in place (saves a copy at 30M)."""
    secs += int(origin.value // 1_000_000_000)
    secs *= 1_000_000_000
    return secs.view("datetime64[ns]")


def to_dates(origin: pd.Timestamp, days: np.ndarray) -> np.ndarray:
    """Convert float days since ``origin`` to midnight datetime64[ns] (a CRM date field)."""
    whole = np.floor(np.asarray(days, dtype=np.float64)).astype(np.int64)
    return (origin.to_datetime64().astype("datetime64[D]") + whole.astype("timedelta64[D]")).astype(
        "datetime64[ns]"
    )
