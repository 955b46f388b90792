"""Honest splits: train on the past, test on the most recent period, no account on both sides.

With dates, closed deals are ordered by creation; the most recent ``test_fraction`` is the
test set. Older rows of an account that also has a test row are held out of training (they
would let the model recognise the account), and counted. The validation set (early stopping,
calibration) is carved from the end of the training period the same way; the rows held out for
its sake alone are before the test period and of no test account, so the final refit learns
from them (:attr:`Split.fit_rows`). Without dates the split is stratified by outcome and
grouped by account.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedShuffleSplit

from abm_ml.data.spec import DatasetSpec
from abm_ml.errors import AbmInputError
from abm_ml.schema import ACCOUNT_ID, CREATED_AT, LOST, OUTCOME, WON


@dataclass
class Split:
    """Row positions (into the dataset frame) of each part, and how the split was made."""

    method: str
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    held_out: np.ndarray
    """Rows in no part because their account appears in a later part (includes
    :attr:`held_valid`)."""
    test_start: str | None = None
    valid_start: str | None = None
    held_valid: np.ndarray = field(default_factory=lambda: np.array([], dtype=int))
    """The held-out rows kept out only for the validation part's sake: older than the test
    period and of no test account, so the final refit learns from them (:attr:`fit_rows`)."""

    @property
    def fit_rows(self) -> np.ndarray:
        """Every closed deal a final model may learn from: train, validation and
        :attr:`held_valid` (nothing of the test period or of a test account), in that order.

        Not sorted: the folds and fits over these rows follow their order, so a split without
        such rows gives the same model as before they joined."""
        return np.concatenate([self.train, self.valid, self.held_valid])

    def describe(self) -> dict:
        info = {k: v for k, v in asdict(self).items() if not isinstance(v, np.ndarray)}
        info.update(
            {
                f"n_{k}": len(getattr(self, k))
                for k in ("train", "valid", "test", "held_out", "held_valid")
            }
        )
        return info


def _time_cut(
    frame: pd.DataFrame, positions: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.Timestamp, bool]:
    """Split ``positions`` into (older, recent, held out) by creation time, grouped by account.

    When accounts recur in every period (a few big customers with many deals), holding out the
    older rows of every recent account would leave almost nothing to train on. Then a random
    ``fraction`` of the accounts is taken for the recent side instead: their recent deals are the
    test rows, the other accounts' older deals train, and the rest (older deals of test accounts,
    recent deals of training accounts) is held out. The last value says whether this happened.
    """
    if len(positions) == 0:
        raise AbmInputError("no closed deals to split", field="split")
    created = frame[CREATED_AT].to_numpy()[positions]
    accounts = frame[ACCOUNT_ID].to_numpy()[positions]
    order = np.argsort(created, kind="stable")
    cut_at = round(len(positions) * (1 - fraction))
    cutoff = created[order[min(cut_at, len(order) - 1)]]
    is_recent = created >= cutoff
    shared = np.isin(accounts, list(set(accounts[is_recent]))) & ~is_recent
    if shared.sum() <= 0.5 * (~is_recent).sum():
        return (
            positions[~is_recent & ~shared],
            positions[is_recent],
            positions[shared],
            pd.Timestamp(cutoff),
            False,
        )
    distinct = np.unique(accounts.astype(str))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(distinct, size=max(1, round(len(distinct) * fraction)), replace=False)
    in_test = np.isin(accounts.astype(str), chosen)
    held = (in_test & ~is_recent) | (~in_test & is_recent)
    return (
        positions[~in_test & ~is_recent],
        positions[in_test & is_recent],
        positions[held],
        pd.Timestamp(cutoff),
        True,
    )


def _grouped_stratified(
    frame: pd.DataFrame, positions: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    y = (frame[OUTCOME].to_numpy()[positions] == WON).astype(int)
    groups = frame[ACCOUNT_ID].to_numpy()[positions]
    if pd.Series(groups).is_unique:
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        keep, take = next(splitter.split(positions, y))
    else:
        n_splits = max(2, round(1 / fraction))
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        keep, take = next(splitter.split(positions, y, groups))
    return positions[np.sort(keep)], positions[np.sort(take)]


def make_split(frame: pd.DataFrame, spec: DatasetSpec, *, seed: int = 42) -> Split:
    """Split the closed deals of ``frame`` into train, validation and test parts."""
    closed = np.flatnonzero(frame[OUTCOME].isin([WON, LOST]).to_numpy())
    method = spec.split.method
    if method == "auto":
        method = (
            "time"
            if spec.has_dates and frame[CREATED_AT].iloc[closed].notna().all()
            else "stratified"
        )
    if method == "time":
        rest, test, held_test, test_start, sampled_test = _time_cut(
            frame, closed, spec.split.test_fraction, seed
        )
        valid_fraction = spec.split.valid_fraction / (1 - spec.split.test_fraction)
        train, valid, held_valid, valid_start, sampled_valid = _time_cut(
            frame, rest, valid_fraction, seed + 1
        )
        return Split(
            method="time, sampled accounts" if sampled_test or sampled_valid else "time",
            train=train,
            valid=valid,
            test=test,
            held_out=np.sort(np.concatenate([held_test, held_valid])),
            test_start=str(test_start.date()),
            valid_start=str(valid_start.date()),
            held_valid=np.sort(held_valid),
        )
    rest, test = _grouped_stratified(frame, closed, spec.split.test_fraction, seed)
    valid_fraction = spec.split.valid_fraction / (1 - spec.split.test_fraction)
    train, valid = _grouped_stratified(frame, rest, valid_fraction, seed + 1)
    return Split(
        method="stratified", train=train, valid=valid, test=test, held_out=np.array([], dtype=int)
    )
