"""What each flagged column adds to a quick model: the ROC AUC jump behind a leakage finding.

The leakage guard judges columns one at a time; a column filled in after the outcome shows
best in what it adds to a model. `leak_check(dataset)` splits the dataset as training does
(its own split: time-based or stratified, grouped by account), fits a small LightGBM on the
training rows with the features the guard keeps, and again with and without each flagged
column: without each suspicious column it keeps, with each column it refuses. The test-row
ROC AUC of both fits gives the jump the column causes. A jump of a few hundredths from one
free-text or admin column is the mark of a leak (see :mod:`abm_ml.data.leakage`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from abm_ml.data.leakage import LeakFinding, check_leakage, refused
from abm_ml.data.split import make_split
from abm_ml.data.validate import Dataset
from abm_ml.modeling.boosting import TrainConfig, fit_propensity
from abm_ml.modeling.feature_info import FeatureInfo
from abm_ml.modeling.scorer import Preprocessor
from abm_ml.schema import OUTCOME, WON


def quick_config(seed: int = 42) -> TrainConfig:
    """A small LightGBM: seconds on 80,000 rows, enough to see a leak's jump."""
    return TrainConfig(
        seed=seed,
        learning_rate=0.1,
        num_leaves=15,
        max_bin=255,
        max_rounds=300,
        early_stopping_rounds=30,
        n_boot=0,
    )


@dataclass(frozen=True)
class LeakImpact:
    """Test-row ROC AUC of the quick model with and without one flagged column."""

    column: str
    level: str
    auc_with: float
    auc_without: float

    @property
    def jump(self) -> float:
        return self.auc_with - self.auc_without

    def message(self) -> str:
        verdict = "kept with a warning" if self.level == "warn" else "refused by the guard"
        return (
            f"{self.column!r} ({verdict}): ROC AUC {self.auc_with:.3f} with it, "
            f"{self.auc_without:.3f} without ({self.jump:+.3f})"
        )

    def to_dict(self) -> dict:
        return asdict(self) | {"jump": self.jump}


def _quick_auc(dataset: Dataset, features: list[FeatureInfo], split, config: TrainConfig) -> float:
    """Test-row ROC AUC of a small LightGBM on ``features`` (0.5 with no feature)."""
    from sklearn.metrics import roc_auc_score

    if not features:
        return 0.5
    frame = dataset.frame
    y = (frame[OUTCOME] == WON).to_numpy(dtype=int)
    preprocessor = Preprocessor(features).fit(frame.iloc[split.train])
    matrix = preprocessor.transform(frame)
    booster = fit_propensity(matrix, y, split, config, preprocessor.categorical_names, None)
    scores = booster.predict(matrix.iloc[split.test], num_iteration=booster.best_iteration)
    y_test = y[split.test]
    if np.unique(y_test).size < 2:
        return float("nan")
    return float(roc_auc_score(y_test, scores))


def leak_check(
    dataset: Dataset, *, seed: int = 42, findings: list[LeakFinding] | None = None
) -> list[LeakImpact]:
    """The ROC AUC jump of each column the guard warns about or refuses (not spec-marked ones).

    Args:
        dataset: a validated dataset.
        seed: seed of the split and the model, as in ``abm-ml train``.
        findings: the guard's findings on the training rows; computed when absent.

    Returns:
        One impact per flagged column, largest jump first.
    """
    config = quick_config(seed)
    split = make_split(dataset.frame, dataset.spec, seed=seed)
    if findings is None:
        findings = check_leakage(dataset.frame.iloc[split.train], dataset.features, dataset.spec)
    dropped = refused(findings)
    kept = [f for f in dataset.features if f.name not in dropped]
    by_name = {f.name: f for f in dataset.features}
    base_auc = _quick_auc(dataset, kept, split, config)
    impacts = []
    for finding in findings:
        if finding.rule == "spec" or finding.feature not in by_name:
            continue
        if finding.refuses:
            other = _quick_auc(dataset, [*kept, by_name[finding.feature]], split, config)
            impacts.append(LeakImpact(finding.column, finding.level, other, base_auc))
        elif finding.feature in {f.name for f in kept}:
            without = [f for f in kept if f.name != finding.feature]
            other = _quick_auc(dataset, without, split, config)
            impacts.append(LeakImpact(finding.column, finding.level, base_auc, other))
    return sorted(impacts, key=lambda impact: -impact.jump)
