"""The two statistics of monitoring, with numpy alone: PSI and a label-free ROC AUC estimate."""

from __future__ import annotations

import numpy as np

PSI_FLOOR = 1e-4
"""Share given to an empty bin: PSI's log is infinite on an empty bin, and one row of 10,000
should not read as infinite drift."""


def psi(reference: object, current: object) -> float:
    """Population stability index of two share vectors over the same bins.

    ``sum((current - reference) * ln(current / reference))``; 0 when the shares match. The
    customary reading: below 0.1 stable, 0.1-0.25 a moderate shift, above 0.25 a major one.
    """
    ref = np.maximum(np.asarray(reference, dtype=float), PSI_FLOOR)
    cur = np.maximum(np.asarray(current, dtype=float), PSI_FLOOR)
    ref, cur = ref / ref.sum(), cur / cur.sum()
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def expected_roc_auc(propensity: object) -> float:
    """ROC AUC expected when each row is won with its calibrated probability (no labels needed).

    The confidence-based performance estimation idea (CBPE, as in NannyML): if the scores are
    calibrated on this population, row i is won with probability p_i, so a pair (i, j) is a
    (won, lost) pair with probability p_i (1 - p_j), and the AUC's expectation is the weighted
    share of such pairs the scores order correctly (ties count half)::

        sum_{i != j} p_i (1 - p_j) [p_i > p_j] + 0.5 [p_i = p_j]
        --------------------------------------------------------
                   sum_{i != j} p_i (1 - p_j)

    The assumption that matters: calibration still holds (the chance of winning given the
    features has not changed). It sees a population that is easier or harder to rank; it
    cannot see a market whose buyers now decide differently. Computed in O(n log n).
    """
    p = np.asarray(propensity, dtype=float)
    p = p[np.isfinite(p)]
    if p.size < 2:
        return float("nan")
    _, inverse = np.unique(p, return_inverse=True)
    won_weight = np.bincount(inverse, weights=p)  # sum of p_i per distinct score
    lost_weight = np.bincount(inverse, weights=1 - p)  # sum of (1 - p_j) per distinct score
    lost_below = np.concatenate([[0.0], np.cumsum(lost_weight)[:-1]])
    # Within a tie group, pairs of two different rows: sum_i p_i * (sum_j (1 - p_j) - (1 - p_i)).
    tie_pairs = won_weight * lost_weight - np.bincount(inverse, weights=p * (1 - p))
    numerator = float(np.sum(won_weight * lost_below) + 0.5 * np.sum(tie_pairs))
    denominator = float(p.sum() * (1 - p).sum() - np.sum(p * (1 - p)))
    return numerator / denominator if denominator > 0 else float("nan")
