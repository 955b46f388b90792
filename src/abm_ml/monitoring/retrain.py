"""Gated retraining: train on the newest export, promote only on evidence.

The new model is registered as challenger and compared with the champion on the challenger's
own holdout: the most recent closed deals, which the challenger did not train on and the
champion, trained on an older export, most likely never saw. It becomes champion only
if it is better on the primary metric (ROC AUC by default) **and** its calibration (ECE) is not
worse beyond a tolerance **and** beyond the noise: a model that ranks a little better but whose
probabilities drifted away from the win rates would mislead every expected value and tier built
on them. The noise is the 95 % interval of the paired ECE difference (both models on the same
resamples of the holdout, accounts whole): on a holdout of a few hundred deals one model's ECE
moves by a few points from sample to sample, and the bare tolerance refused a challenger that
ranked better and had the better Brier score (the planted export's 472 holdout rows: ECE 0.056
against 0.039, a difference whose interval spans zero).

The promotion itself, its audit trail and the rollback are :mod:`abm_ml.registry.promotion`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow.tracking import MlflowClient

from abm_ml import config as cfg
from abm_ml.errors import ModelNotPromotableError
from abm_ml.modeling import metrics as m
from abm_ml.modeling.evaluate import check_metric, evaluate_scorer
from abm_ml.registry.promotion import promote
from abm_ml.registry.store import (
    client,
    download_run_table,
    load_scorer,
    resolve_version,
    version_by_alias,
)

CALIBRATION_METRIC = "ece"
DEFAULT_TOLERANCE = 0.02
"""ECE points a challenger may lose against the champion and still be promoted (more when the
paired difference's interval reaches zero: see the module text)."""
CALIBRATION_RESAMPLES = 200


@dataclass
class Gate:
    """Both models on the challenger's holdout, and whether the challenger passes."""

    passed: bool
    reason: str
    metric: str
    challenger: dict[str, float]
    champion: dict[str, float]


@dataclass
class RetrainOutcome:
    """What a retrain did: the version it registered and whether that is now champion."""

    version: str | None
    promoted: bool
    champion: str | None
    reason: str
    gate: Gate | None = None


def gate(
    challenger: str,
    *,
    metric: str = "roc_auc",
    tolerance: float = DEFAULT_TOLERANCE,
    name: str | None = None,
    mlflow_client: MlflowClient | None = None,
) -> Gate:
    """Compare the challenger version with the champion on the challenger's holdout.

    Passes when the challenger is better on ``metric`` (its direction from
    :func:`abm_ml.modeling.metrics.is_better`) and its ECE is at most ``tolerance`` above the
    champion's or the paired difference's 95 % interval reaches zero.
    """
    check_metric(metric)
    mlflow_client = mlflow_client or client()
    name = name or cfg.registered_model_name()
    new = resolve_version(name, challenger, mlflow_client=mlflow_client)
    old = version_by_alias(mlflow_client, name, cfg.CHAMPION)
    if old is None:
        return Gate(True, "first champion: no model to compare with", metric, {}, {})
    holdout = download_run_table(new.run_id, mlflow_client=mlflow_client)
    values: dict[str, dict[str, float]] = {}
    evaluations = {}
    for label, mv in (("challenger", new), ("champion", old)):
        scorer, _ = load_scorer(name, mv.version, mlflow_client=mlflow_client)
        evaluations[label] = evaluate_scorer(scorer, holdout, n_boot=0)
        found = evaluations[label].propensity
        values[label] = {k: found[k].value for k in (metric, CALIBRATION_METRIC) if k in found}
    both = evaluations["challenger"], evaluations["champion"]
    difference = m.paired_ece_difference(
        both[0].labels,
        both[0].scored["propensity"].to_numpy(),
        both[1].scored["propensity"].to_numpy(),
        n_boot=CALIBRATION_RESAMPLES,
        groups=both[0].scored.get("account_id"),
    )
    passed, why = decide(
        metric, values["challenger"], values["champion"], tolerance, ece_difference=difference
    )
    ch, cp = values["challenger"], values["champion"]
    reason = (
        f"{why} on the challenger's holdout ({len(holdout)} rows): {metric} v{new.version} "
        f"{ch[metric]:.4f} vs v{old.version} {cp[metric]:.4f}; ECE {ch[CALIBRATION_METRIC]:.4f} "
        f"vs {cp[CALIBRATION_METRIC]:.4f}, difference {difference.value:+.4f} "
        f"[{difference.low:+.4f}, {difference.high:+.4f}] (tolerance {tolerance:g})"
    )
    return Gate(passed, reason, metric, ch, cp)


def decide(
    metric: str,
    challenger: dict[str, float],
    champion: dict[str, float],
    tolerance: float,
    *,
    ece_difference: m.Metric | None = None,
) -> tuple[bool, str]:
    """The promotion rule on two models' holdout figures: (passes, why in a few words).

    ``ece_difference`` is :func:`abm_ml.modeling.metrics.paired_ece_difference` of the two
    models on the holdout; when its interval reaches zero, a worse ECE is within the noise.
    """
    if not m.is_better(metric, challenger[metric], champion[metric]):
        return False, f"not better on {metric}"
    if challenger[CALIBRATION_METRIC] - champion[CALIBRATION_METRIC] > tolerance:
        if ece_difference is None or not ece_difference.low <= 0.0:
            return False, "calibration worse beyond the tolerance"
        return True, "better (its worse calibration is within the noise)"
    return True, "better"


def promote_if_better(
    version: str,
    *,
    metric: str = "roc_auc",
    tolerance: float = DEFAULT_TOLERANCE,
    name: str | None = None,
    mlflow_client: MlflowClient | None = None,
) -> RetrainOutcome:
    """Make ``version`` champion if it passes :func:`gate`; otherwise tag why it did not."""
    mlflow_client = mlflow_client or client()
    name = name or cfg.registered_model_name()
    verdict = gate(
        version, metric=metric, tolerance=tolerance, name=name, mlflow_client=mlflow_client
    )
    champion = version_by_alias(mlflow_client, name, cfg.CHAMPION)
    if not verdict.passed:
        mlflow_client.set_model_version_tag(name, version, "abm_ml.retrain_refused", verdict.reason)
        return RetrainOutcome(
            version, False, str(champion.version) if champion else None, verdict.reason, verdict
        )
    try:
        decision = promote(name=name, version=version, metric=metric, mlflow_client=mlflow_client)
    except ModelNotPromotableError as error:
        # The registry's own checks (no better than chance) have the last word.
        return RetrainOutcome(
            version, False, str(champion.version) if champion else None, str(error), verdict
        )
    return RetrainOutcome(version, True, decision.version, verdict.reason, verdict)
