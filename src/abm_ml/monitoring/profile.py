"""Reference profiles: what the model's inputs and scores looked like, in a few numbers per feature.

A profile holds, per feature, the shares of rows in fixed bins (quantile bins for numbers; the
training rows' frequent categories, "rare" for the model's other ones and "unseen" for the rest;
no/yes for booleans) and the share of missing values, and the same for the calibrated propensity. Every profile of one model uses the
bins of its training profile, so two profiles compare share by share (PSI) without the rows.
Those bins are wide for the accounts scored today, on purpose: bins cut on a scoring run's own
quantiles sit next to its point masses (a segment's imputed median deal size, a count of 0), and
a 1 % move of such a mass reads as a PSI of several units. The cost: a shift that stays inside
one training bin is not seen.

Two populations are profiled, and never confused:

* the **training rows** (opportunities as of their creation), stored with the model at training
  (:func:`training_profile`, logged by :func:`attach_reference_profile`);
* the **scoring runs** (accounts as of a ranking date), stored after each monitored run
  (:class:`ProfileStore`): the first run becomes the reference that later runs compare with.

The two populations differ by design (an opportunity at creation is not an account today), so
drift verdicts compare a scoring run with an earlier scoring run; the training profile is
shown next to it for context and checks only what does not depend on the population: category
values the model never saw.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from abm_ml.monitoring.stats import expected_roc_auc

if TYPE_CHECKING:
    from abm_ml.modeling.scorer import AccountScorer
    from abm_ml.modeling.train import TrainingResult

PROFILE_FORMAT = 1
QUANTILE_BINS = 10
SCORE_FEATURE = "score"
"""Name of the calibrated propensity's profile (not a feature name: the spec reserves it)."""
METADATA_KEY = "reference_profile"
"""Key of the training profile in the scorer's metadata (it travels with the pickled model)."""
ARTIFACT_PATH = "monitoring/reference_profile.json"
UNSEEN, MISSING, RARE = "(unseen)", "(missing)", "(rare)"
MIN_CATEGORY_SHARE = 0.01
"""A category has a bin of its own when at least this share of the training rows holds it; the
rarer categories the model knows share the :data:`RARE` bin. With a bin per category, a column
of hundreds of values seen once or twice (Olist's landing pages) drifted "majorly" between two
random halves of the same rows (PSI 0.31-0.48): most of its bins held a row or none."""
BOOLEAN_LABELS = ["no", "yes"]
TRAINING, SCORING = "training rows", "scoring run"


@dataclass
class FeatureProfile:
    """Shares of one feature's values in fixed bins.

    Attributes:
        name: the feature (or :data:`SCORE_FEATURE`).
        kind: ``numeric``, ``categorical`` or ``boolean``.
        labels: one per share; numbers: ``< edge`` bins, categories: the training rows'
            frequent categories, then :data:`RARE` (profiles made before it existed have a bin
            for every category and none), then :data:`UNSEEN`; always :data:`MISSING` last.
        shares: share of all rows in each bin (sums to 1 when there are rows).
        edges: the inner cut points of numeric bins (empty for other kinds).
    """

    name: str
    kind: str
    labels: list[str]
    shares: list[float]
    edges: list[float] = field(default_factory=list)

    @property
    def missing_share(self) -> float:
        return float(self.shares[-1])

    @property
    def unseen_share(self) -> float:
        """Share of rows with a category the model never saw (0 for numbers and booleans)."""
        return float(self.shares[-2]) if self.kind == "categorical" else 0.0


@dataclass
class Profile:
    """A population's profile: per feature, the score, and how it was made."""

    population: str
    rows: int
    features: dict[str, FeatureProfile]
    score: FeatureProfile
    estimated_roc_auc: float
    mean_propensity: float
    as_of: str | None = None
    model_version: str | None = None
    thresholds: dict = field(default_factory=dict)
    created_at: str = field(
        default_factory=lambda: pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")
    )

    def to_dict(self) -> dict:
        return {"format": PROFILE_FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> Profile:
        data = {k: v for k, v in data.items() if k != "format"}
        return cls(
            **{
                **data,
                "features": {k: FeatureProfile(**v) for k, v in data["features"].items()},
                "score": FeatureProfile(**data["score"]),
            }
        )


def _shares(codes: np.ndarray, n_bins: int) -> list[float]:
    counts = np.bincount(codes, minlength=n_bins).astype(float)
    return (counts / max(len(codes), 1)).tolist()


def quantile_edges(values: np.ndarray, n_bins: int = QUANTILE_BINS) -> list[float]:
    """Inner cut points of (at most) ``n_bins`` equal-frequency bins of the known values.

    Each cut sits halfway between the distinct value at a quantile and the next one, never
    on a value: CRM columns are full of point masses (counts, imputed medians, round amounts),
    and a cut on a point mass would move all its rows across it for the slightest change.
    Repeated quantiles collapse into one cut, so no bin is empty by construction.
    """
    known = values[np.isfinite(values)]
    if known.size == 0:
        return []
    distinct = np.unique(known)
    inner = np.quantile(known, np.linspace(0, 1, n_bins + 1)[1:-1])
    below = np.searchsorted(distinct, inner, side="right") - 1
    below = below[below + 1 < distinct.size]
    return sorted({float((distinct[i] + distinct[i + 1]) / 2) for i in below})


def _numeric(name: str, values: np.ndarray, edges: list[float], kind: str) -> FeatureProfile:
    missing = ~np.isfinite(values)
    codes = np.searchsorted(np.asarray(edges, dtype=float), values, side="right")
    codes = np.where(missing, len(edges) + 1, codes)
    labels = [f"< {e:.4g}" for e in edges] + [f">= {edges[-1]:.4g}" if edges else "all", MISSING]
    return FeatureProfile(name, kind, labels, _shares(codes, len(edges) + 2), list(edges))


def _boolean(name: str, values: np.ndarray) -> FeatureProfile:
    codes = np.where(np.isfinite(values), (values != 0).astype(int), 2)
    return FeatureProfile(name, "boolean", [*BOOLEAN_LABELS, MISSING], _shares(codes, 3))


def _categorical(
    name: str, values: pd.Series, categories: list[str], layout: FeatureProfile | None = None
) -> FeatureProfile:
    """Shares of the frequent categories, the rare ones, unseen ones and missing values.

    Args:
        categories: the model's categories (any other value is unseen).
        layout: the training profile's, whose bins are kept; None makes the bins from these
            rows: the categories at least :data:`MIN_CATEGORY_SHARE` of them hold.
    """
    missing = values.isna().to_numpy()
    text = values.astype(object).where(~missing, None)
    known = pd.Index(categories).get_indexer(text) >= 0
    if layout is None:
        counts = text[known].value_counts()
        bins = sorted(counts.index[counts >= MIN_CATEGORY_SHARE * max(len(values), 1)])
        rare = True
    else:
        rare = RARE in layout.labels
        bins = [label for label in layout.labels if label not in (RARE, UNSEEN, MISSING)]
    own = pd.Index(bins).get_indexer(text)
    codes = np.where(own >= 0, own, np.where(known, len(bins), len(bins) + rare))
    codes = np.where(missing, len(bins) + rare + 1, codes)
    labels = [*bins, *([RARE] if rare else []), UNSEEN, MISSING]
    return FeatureProfile(name, "categorical", labels, _shares(codes, len(labels)))


def profile_values(
    scorer: AccountScorer,
    values: pd.DataFrame,
    propensity: np.ndarray,
    *,
    population: str,
    layout: Profile | None = None,
    as_of: str | None = None,
    model_version: str | None = None,
    thresholds: dict | None = None,
) -> Profile:
    """Profile feature values (as :meth:`Preprocessor.raw_values` gives them) and propensities.

    Args:
        scorer: the model; its preprocessor's categories are the categorical bins.
        values: one row per record, one column per model feature.
        propensity: the calibrated propensity of each row.
        population: :data:`TRAINING` or :data:`SCORING`.
        layout: the profile whose numeric bins to reuse (the training profile); None makes
            new quantile bins from these rows (training).
        as_of: the scoring date, for scoring runs.
        model_version: the registered version that scored them, when known.
        thresholds: the monitoring thresholds to keep with the profile (training).
    """
    features: dict[str, FeatureProfile] = {}
    categories = scorer.preprocessor.categories_
    for feature in scorer.features:
        column = values[feature.name]
        if feature.type == "categorical":
            features[feature.name] = _categorical(
                feature.name,
                column,
                categories[feature.name],
                layout.features.get(feature.name) if layout is not None else None,
            )
        elif feature.type == "boolean":
            features[feature.name] = _boolean(feature.name, column.to_numpy(dtype=float))
        else:
            numbers = column.to_numpy(dtype=float)
            edges = (
                layout.features[feature.name].edges
                if layout is not None and feature.name in layout.features
                else quantile_edges(numbers)
            )
            features[feature.name] = _numeric(feature.name, numbers, edges, "numeric")
    propensity = np.asarray(propensity, dtype=float)
    score_edges = layout.score.edges if layout is not None else quantile_edges(propensity)
    return Profile(
        population=population,
        rows=len(values),
        features=features,
        score=_numeric(SCORE_FEATURE, propensity, score_edges, "numeric"),
        estimated_roc_auc=expected_roc_auc(propensity),
        mean_propensity=float(np.mean(propensity)) if propensity.size else float("nan"),
        as_of=as_of,
        model_version=model_version,
        thresholds=dict(thresholds or {}),
    )


def training_profile(result: TrainingResult) -> Profile:
    """The profile of the rows the packaged model was fitted on (train + validation).

    Their propensities are the packaged scorer's, computed by :meth:`AccountScorer.score`.
    """
    frame = result.dataset.frame
    rows = frame.iloc[result.split.fit_rows]
    scorer = result.scorer
    values = scorer.preprocessor.raw_values(rows)
    propensity = scorer.score(rows, with_reasons=False)["propensity"].to_numpy()
    spec = result.dataset.spec
    monitoring = getattr(spec, "monitoring", None)
    return profile_values(
        scorer,
        values,
        propensity,
        population=TRAINING,
        thresholds=monitoring.model_dump() if monitoring is not None else {},
    )


def attach_reference_profile(result: TrainingResult) -> Profile:
    """Store the training profile with the model: in the scorer's metadata and as an artifact.

    Called once by :func:`abm_ml.registry.tracking.log_training` inside the active MLflow run,
    before the scorer is packaged, so the registered model carries its own reference.
    """
    import mlflow

    profile = training_profile(result)
    result.scorer.metadata[METADATA_KEY] = profile.to_dict()
    mlflow.log_dict(profile.to_dict(), ARTIFACT_PATH)
    return profile


def reference_of(scorer: AccountScorer) -> Profile | None:
    """The training profile a model carries, or None (models trained before profiles existed)."""
    data = scorer.metadata.get(METADATA_KEY)
    return Profile.from_dict(data) if data else None


class ProfileStore:
    """Scoring-run profiles of one model version, one JSON file per as-of date, in a folder.

    A run repeated for the same date replaces that date's profile; the first stored date is
    the reference of later runs (or the latest earlier date, with ``reference: previous``).
    """

    def __init__(self, folder: Path, model_name: str, model_version: str) -> None:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{model_name}-v{model_version}")
        self.folder = Path(folder) / slug

    def _path(self, as_of: str) -> Path:
        return self.folder / f"profile-{as_of}.json"

    def dates(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.stem.removeprefix("profile-") for p in self.folder.glob("profile-*.json"))

    def load(self, as_of: str) -> Profile:
        return Profile.from_dict(json.loads(self._path(as_of).read_text()))

    def reference_for(self, as_of: str, mode: str = "first") -> Profile | None:
        """The scoring run ``as_of`` is compared with: the first or the latest earlier one."""
        earlier = [d for d in self.dates() if d < as_of]
        if not earlier:
            return None
        return self.load(earlier[0] if mode == "first" else earlier[-1])

    def save(self, profile: Profile) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(str(profile.as_of))
        path.write_text(json.dumps(profile.to_dict(), indent=1))
        return path
