"""Leakage guard: refuse features that are only known after the outcome, warn on suspicious ones.

Checks that refuse a column, each naming the column and why:

1. the spec marks the column ``known_after_outcome``;
2. the column alone separates won from lost almost perfectly (single-feature ROC AUC at or
   above ``leakage.auc_threshold``, 0.95 by default, on the training rows; missing values count
   as a value of their own, since "blank unless won" is the commonest leak in CRM joins);
3. whether it is blank alone separates won from lost (ROC AUC of blank-or-not at or above
   ``leakage.missingness_auc_threshold``, 0.75): a field sales fills in once a deal is won
   (a discount, a billing plan, a contract reference) is blank for most lost deals; so is a
   column filled for some deals of one outcome and for none of the other, when chance alone
   would have filled at least 10 of those. Refused, or only flagged with
   ``leakage.missingness: flag``;
4. it tracks the deal's closing duration (|Spearman| at or above 0.9), which is only known
   once the deal has closed;
5. its name says it describes the sales process up to the close ("stage", "elapsed",
   "closing", "duration", "outcome", ...). On the IBM win-loss data no single stage column is a
   strong predictor alone (single-feature AUC 0.61 to 0.74), yet together they lift the model's
   AUC from 0.84 to 0.94; only their meaning gives them away, so the guard reads names too.

A column that passes them but separates won from lost suspiciously well (single-feature ROC AUC
at or above ``leakage.suspicious_auc_threshold``, 0.80), or whose name sounds filled in after
the outcome (tags, status, reason, quality, last activity, discount, billing...), is kept with
a *warning* giving its figure: a free-text tag column filled at close can score 0.92 alone and
lift a model from an honest 0.89 to 0.98. ``abm-ml validate --leak-check`` measures what each
warned column adds to a quick model (:mod:`abm_ml.modeling.leak_check`).

A column listed in ``leakage.allow`` is kept despite a finding; the finding is still reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from abm_ml.data.spec import DatasetSpec
from abm_ml.data.words import name_words
from abm_ml.modeling.feature_info import FeatureInfo
from abm_ml.schema import DAYS_TO_CLOSE, LOST, OUTCOME, WON

POST_OUTCOME_WORDS = frozenset(
    {
        "stage",
        "stages",
        "elapsed",
        "close",
        "closed",
        "closing",
        "closure",
        "duration",
        "outcome",
        "result",
        "won_date",
        "lost_date",
    }
    # The same in the other languages CRMs are run in, folded (see abm_ml.data.words).
    | {"etape", "stufe", "etapa", "fase", "fermeture", "cloture", "abschluss", "geschlossen"}
    | {"cierre", "fechamento", "chiusura", "sluiting", "resultat", "ergebnis", "resultado"}
    | {"esito", "duree", "dauer", "duracion", "duracao", "durata", "looptijd"}
)
SUSPICIOUS_WORDS = frozenset(
    {
        "tag",
        "tags",
        "status",
        "reason",
        "reasons",
        "quality",
        "discount",
        "discounts",
        "billing",
        "signed",
        "signature",
        "invoice",
        "contract",
    }
    | {"statut", "raison", "motif", "grund", "motivo", "razon", "reden", "remise", "rabatt"}
    | {"descuento", "desconto", "sconto", "korting", "facturation", "facture", "rechnung"}
    | {"factura", "fatura", "fattura", "factuur", "contrat", "vertrag", "contrato", "contratto"}
)
"""Words of column names sales usually fill in after the outcome: a warning, never a refusal."""
SUSPICIOUS_PHRASES = (
    ("last", "activity"),
    ("last", "contact"),
    ("last", "modified"),
    # A deal's age is days open: up to its close for a closed deal (Salesforce's 'Age').
    ("opportunity", "age"),
    ("deal", "age"),
    ("days", "open"),
    # Salesforce's 'Fiscal Period' and 'Fiscal Quarter' are those of the close date.
    ("fiscal", "period"),
    ("fiscal", "quarter"),
)
POST_OUTCOME_PHRASES = (
    ("total", "days"),
    ("ratio", "days"),
    ("days", "to", "close"),
    ("close", "date"),
    ("close", "value"),
)


@dataclass(frozen=True)
class LeakFinding:
    """One reason to believe a column is known only after the outcome."""

    feature: str
    column: str
    rule: str
    detail: str
    allowed: bool
    level: str = "refuse"
    """'refuse' (dropped unless allowed) or 'warn' (kept, reported with its figure)."""
    auc: float | None = None
    """The column's single-feature ROC AUC on the closed training rows, when measured."""

    @property
    def refuses(self) -> bool:
        """Whether the guard drops the column from the features."""
        return self.level == "refuse" and not self.allowed

    @property
    def decision(self) -> str:
        if self.level == "warn":
            return "kept, suspicious: check it (abm-ml validate --leak-check)"
        return "kept (allowed by the spec)" if self.allowed else "refused as a feature"

    def message(self) -> str:
        return f"{self.column!r}: {self.detail}; {self.decision}"

    def to_dict(self) -> dict:
        return asdict(self)


def _words(name: str) -> list[str]:
    return name_words(name)


def _name_match(column: str, words_set: frozenset[str], phrases: tuple) -> str | None:
    words = _words(column)
    for word in words:
        if word in words_set:
            return word
    for phrase in phrases:
        n = len(phrase)
        if any(tuple(words[i : i + n]) == phrase for i in range(len(words) - n + 1)):
            return " ".join(phrase)
    return None


def name_suggests_post_outcome(column: str) -> str | None:
    """The word or phrase in a column name that marks it as known only after the outcome."""
    return _name_match(column, POST_OUTCOME_WORDS, POST_OUTCOME_PHRASES)


def name_sounds_suspicious(column: str) -> str | None:
    """The word or phrase in a column name that sounds filled in after the outcome (a warning)."""
    return _name_match(column, SUSPICIOUS_WORDS, SUSPICIOUS_PHRASES)


def missingness_auc(values: pd.Series, won: np.ndarray) -> tuple[float, float, float]:
    """How well blank-or-not alone separates won from lost.

    Returns:
        (ROC AUC of the blank indicator as max(AUC, 1 - AUC), share blank among lost deals,
        share blank among won deals). The AUC of a yes/no score is 0.5 + |difference| / 2.
    """
    blank = values.isna().to_numpy()
    won_mask = won.astype(bool)
    blank_won = float(blank[won_mask].mean()) if won_mask.any() else 0.0
    blank_lost = float(blank[~won_mask].mean()) if (~won_mask).any() else 0.0
    return 0.5 + abs(blank_won - blank_lost) / 2, blank_lost, blank_won


CATEGORY_FOLDS = 5
"""Folds of the out-of-fold win rate a category is scored with (see :func:`single_feature_auc`)."""


def _out_of_fold_lift(groups: pd.Series, won: np.ndarray) -> np.ndarray:
    """Each row's win rate among the rows of its group in the other folds, minus those folds'
    overall rate (0 when none of them has the group). Minus the overall rate: the other folds'
    rate of a group is lower when the row's own fold holds more of its wins, so on a column of
    one value the bare rate would rank lost rows above won ones."""
    fold = np.random.default_rng(0).permutation(len(groups)) % CATEGORY_FOLDS
    won = np.asarray(won, dtype=float)
    codes = pd.factorize(groups)[0]
    wins = np.zeros((CATEGORY_FOLDS, codes.max() + 1))
    counts = np.zeros_like(wins)
    np.add.at(wins, (fold, codes), won)
    np.add.at(counts, (fold, codes), 1.0)
    other_wins = wins.sum(axis=0)[codes] - wins[fold, codes]
    other_counts = counts.sum(axis=0)[codes] - counts[fold, codes]
    fold_rate = np.array(
        [won[fold != k].mean() if (fold != k).any() else 0.5 for k in range(CATEGORY_FOLDS)]
    )
    rate = np.where(other_counts > 0, other_wins / np.maximum(other_counts, 1.0), fold_rate[fold])
    return rate - fold_rate[fold]


def single_feature_auc(values: pd.Series, won: np.ndarray, kind: str, *, bins: int = 20) -> float:
    """How well the column alone separates won from lost: max(AUC, 1 - AUC) of its binned win rate.

    A category is scored with its **out-of-fold** win rate (5 folds, as a lift over the other
    folds' rate: :func:`_out_of_fold_lift`): measured on the rows it
    describes, a column of many rare values (a landing page, a free-text field) separates won
    from lost by memory alone, each value seen once having a win rate of 0 or 1, and read as a
    leak (a 700-value page column of a hand-written export scored 0.81 in sample). Numbers are
    cut into ``bins`` rank bins, each holding many rows, so their in-sample rate is kept.
    """
    if len(values) == 0:
        return 0.5
    if kind == "categorical":
        groups = values.astype(object).where(values.notna(), "__missing__")
        return _auc_of(won, _out_of_fold_lift(groups, won))
    numeric = pd.to_numeric(values, errors="coerce")
    ranks = numeric.rank(method="dense")
    n_bins = int(min(bins, max(ranks.max() if ranks.notna().any() else 1, 1)))
    groups = pd.Series(
        np.where(
            numeric.isna(), -1, np.floor((ranks.fillna(1) - 1) / max(ranks.max(), 1) * n_bins)
        ),
        index=values.index,
    )
    rate = (
        pd.Series(won, index=values.index).groupby(groups).transform("mean").to_numpy(dtype=float)
    )
    return _auc_of(won, rate)


def _auc_of(won: np.ndarray, rate: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score  # lazy: keeps `abm-ml validate` on a bad spec fast

    if np.unique(rate).size < 2 or np.unique(won).size < 2:
        return 0.5
    auc = roc_auc_score(won, rate)
    return float(max(auc, 1.0 - auc))


def _refusal(
    feature: FeatureInfo, values: pd.Series, won: np.ndarray, auc: float | None, spec: DatasetSpec
) -> tuple[str, str, str] | None:
    """The first refusing rule a column breaks, as (rule, detail, level), or None."""
    leakage = spec.leakage
    if auc is not None and auc >= leakage.auc_threshold:
        return (
            "single_feature_auc",
            f"alone it separates won from lost with ROC AUC {auc:.3f} (threshold {leakage.auc_threshold})",
            "refuse",
        )
    if auc is not None:
        blank_auc, blank_lost, blank_won = missingness_auc(values, won)
        if blank_auc >= leakage.missingness_auc_threshold:
            level = "refuse" if leakage.missingness == "refuse" else "warn"
            detail = (
                f"blank for {blank_lost:.0%} of lost and {blank_won:.0%} of won deals: blank-or-not "
                f"alone separates them with ROC AUC {blank_auc:.3f} (threshold "
                f"{leakage.missingness_auc_threshold}), as when a field is filled in at signature"
            )
            return "missingness", detail, level
        one_sided = filled_for_one_outcome(values, won)
        if one_sided:
            level = "refuse" if leakage.missingness == "refuse" else "warn"
            return "missingness", one_sided, level
    return None


def filled_for_one_outcome(values: pd.Series, won: np.ndarray) -> str | None:
    """A column filled for some deals of one outcome and for none of the other, when chance
    alone would have filled at least 10 of those: filled in once the outcome was known."""
    present = values.notna().to_numpy()
    won_mask = won.astype(bool)
    counts = {"won": int(present[won_mask].sum()), "lost": int(present[~won_mask].sum())}
    sizes = {"won": int(won_mask.sum()), "lost": int((~won_mask).sum())}
    for filled, empty in (("won", "lost"), ("lost", "won")):
        expected = counts[filled] * sizes[empty] / max(sizes[filled], 1)
        if counts[empty] == 0 and counts[filled] > 0 and expected >= 10:
            return (
                f"filled for {counts[filled]:,} {filled} deals ({counts[filled] / sizes[filled]:.0%}) "
                f"and for no {empty} deal (about {expected:.0f} expected by chance): filled in "
                "once the outcome was known"
            )
    return None


def _proxy_or_name(
    feature: FeatureInfo, closed: pd.DataFrame, spec: DatasetSpec
) -> tuple[str, str, str] | None:
    """The duration-proxy and post-outcome-name rules, as (rule, detail, level), or None."""
    if (
        DAYS_TO_CLOSE in closed
        and feature.type != "categorical"
        and closed[DAYS_TO_CLOSE].notna().sum() > 30
    ):
        rho = closed[feature.name].corr(closed[DAYS_TO_CLOSE], method="spearman")
        if pd.notna(rho) and abs(rho) >= spec.leakage.duration_proxy_threshold:
            return (
                "duration_proxy",
                f"it tracks the days to close (Spearman {rho:+.2f}), known only once the deal closes",
                "refuse",
            )
    if spec.leakage.name_patterns:
        word = name_suggests_post_outcome(feature.column)
        if word:
            return (
                "name",
                f"its name ({word!r}) says it describes the deal up to its close",
                "refuse",
            )
    return None


def _suspicion(feature: FeatureInfo, auc: float | None, spec: DatasetSpec) -> str | None:
    """Why a column the refusing rules let through is still suspicious, or None."""
    figure = f"alone it separates won from lost with ROC AUC {auc:.3f}" if auc is not None else ""
    if auc is not None and auc >= spec.leakage.suspicious_auc_threshold:
        return f"{figure} (suspicious from {spec.leakage.suspicious_auc_threshold})"
    word = name_sounds_suspicious(feature.column) if spec.leakage.name_patterns else None
    if word:
        return f"its name ({word!r}) sounds filled in after the outcome" + (
            f"; {figure}" if figure else ""
        )
    return None


def check_leakage(
    frame: pd.DataFrame, features: list[FeatureInfo], spec: DatasetSpec
) -> list[LeakFinding]:
    """Run the checks on closed rows of ``frame`` (use the training rows only).

    Returns:
        One finding per flagged column: level 'refuse' for the refusing rules, 'warn' for a
        suspicious column that is kept.
    """
    closed = frame[frame[OUTCOME].isin([WON, LOST])]
    won = (closed[OUTCOME] == WON).to_numpy(dtype=int)
    allowed = set(spec.leakage.allow)
    marked = {f.column for f in spec.features if f.known_after_outcome}
    findings: list[LeakFinding] = []
    has_two_classes = won.size > 0 and 0 < won.sum() < won.size
    for feature in features:
        is_allowed = feature.column in allowed or feature.name in allowed
        if feature.column in marked:
            findings.append(
                LeakFinding(
                    feature.name,
                    feature.column,
                    "spec",
                    "the spec marks it as known only after the outcome",
                    is_allowed,
                )
            )
            continue
        values = closed[feature.name]
        auc = single_feature_auc(values, won, feature.type) if has_two_classes else None
        found = _refusal(feature, values, won, auc, spec) or _proxy_or_name(feature, closed, spec)
        if found is None:
            suspicion = _suspicion(feature, auc, spec)
            found = ("suspicious", suspicion, "warn") if suspicion else None
        if found is not None:
            rule, detail, level = found
            findings.append(
                LeakFinding(feature.name, feature.column, rule, detail, is_allowed, level, auc)
            )
    return findings


def refused(findings: list[LeakFinding]) -> set[str]:
    """Feature names to drop: every refusing finding not allowed by the spec."""
    return {f.feature for f in findings if f.refuses}


def warnings(findings: list[LeakFinding]) -> list[LeakFinding]:
    """The findings that keep their column but ask the user to check it."""
    return [f for f in findings if f.level == "warn"]
