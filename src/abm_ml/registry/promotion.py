"""Champion and challenger: promotion on evidence, rollback in one step, an audit trail in MLflow.

`promote` moves the ``champion`` alias to the challenger only if the challenger beats the
champion on the challenger's own holdout (the most recent period), both evaluated there by
:func:`abm_ml.modeling.evaluate.evaluate_scorer` on a metric of your choice (ROC AUC by
default; ``ece``, ``brier`` and ``log_loss`` count lower as better). `--force` skips the
comparison but never promotes a model that is no better than chance. `rollback` returns
``champion`` to the version it pointed at before. Every move is recorded in tags: on the
model version (when, why, by whom) and on the registered model (``abm_ml.champion_history``,
the ordered list of champion versions)."""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass

import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from abm_ml import config as cfg
from abm_ml.errors import AbmInputError, ModelNotPromotableError
from abm_ml.modeling import metrics as m
from abm_ml.modeling.evaluate import check_metric, evaluate_scorer
from abm_ml.registry.store import (
    client,
    download_run_table,
    load_scorer,
    resolve_version,
    version_by_alias,
)

__all__ = ["Decision", "promote", "resolve_version", "rollback", "versions_table"]
"""``resolve_version`` lives in :mod:`abm_ml.registry.store`; it is re-exported for callers of
the earlier ``abm_ml.registry.promotion.resolve_version``."""

HISTORY_TAG = "abm_ml.champion_history"


@dataclass
class Decision:
    """What ``promote`` or ``rollback`` did, and why.

    ``challenger_score`` and ``champion_score`` are the compared values of ``metric`` when
    the two models were compared on the challenger's holdout.
    """

    promoted: bool
    version: str
    previous: str | None
    reason: str
    challenger_score: float | None = None
    champion_score: float | None = None
    metric: str | None = None


def _now() -> str:
    return pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")


def _history(mlflow_client: MlflowClient, name: str) -> list[str]:
    tags = mlflow_client.get_registered_model(name).tags
    return json.loads(tags.get(HISTORY_TAG, "[]"))


def _record(
    mlflow_client: MlflowClient,
    name: str,
    version: str,
    action: str,
    reason: str,
    history: list[str],
) -> None:
    mlflow_client.set_registered_model_alias(name, cfg.CHAMPION, version)
    mlflow_client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    mlflow_client.set_registered_model_tag(
        name,
        "abm_ml.last_action",
        json.dumps({"action": action, "version": version, "at": _now(), "reason": reason}),
    )
    mlflow_client.set_model_version_tag(name, version, f"abm_ml.{action}_at", _now())
    mlflow_client.set_model_version_tag(name, version, f"abm_ml.{action}_reason", reason)
    mlflow_client.set_model_version_tag(name, version, f"abm_ml.{action}_by", getpass.getuser())


def _compare(
    mlflow_client: MlflowClient,
    name: str,
    challenger: ModelVersion,
    champion: ModelVersion,
    metric: str,
) -> tuple[float, float, str]:
    """Both models' ``metric`` on the challenger's holdout (the most recent period), and a reason."""
    holdout = download_run_table(challenger.run_id, mlflow_client=mlflow_client)
    scores = {}
    for label, mv in (("challenger", challenger), ("champion", champion)):
        scorer, _ = load_scorer(name, mv.version, mlflow_client=mlflow_client)
        if not set(scorer.feature_names) & set(holdout.columns):
            raise ModelNotPromotableError(
                f"champion version {mv.version} uses none of the challenger's features "
                "(another dataset?); use --force to replace it",
                field="promote",
            )
        propensity = evaluate_scorer(scorer, holdout, n_boot=0).propensity
        if metric not in propensity:
            raise AbmInputError(
                f"metric {metric!r} needs a deal amount on every holdout row", field="metric"
            )
        scores[label] = propensity[metric].value
    reason = (
        f"{metric} on the challenger's holdout ({len(holdout)} rows): challenger v{challenger.version} "
        f"{scores['challenger']:.4f} vs champion v{champion.version} {scores['champion']:.4f}"
    )
    return scores["challenger"], scores["champion"], reason


def promote(
    *,
    name: str | None = None,
    version: str | None = None,
    force: bool = False,
    metric: str = "roc_auc",
    mlflow_client: MlflowClient | None = None,
) -> Decision:
    """Make the challenger (or ``version``) champion if it beats the champion on the same holdout.

    Args:
        name: the registered model (default :func:`cfg.registered_model_name`).
        version: the version to promote (default the ``challenger`` alias).
        force: skip the comparison (never for a model no better than chance).
        metric: the propensity metric compared; its better direction comes from
            :func:`abm_ml.modeling.metrics.is_better` (``ece``: lower wins).
        mlflow_client: the registry (default: the configured store).

    Raises:
        AbmInputError: an unknown metric (the message lists the allowed ones) or version.
        ModelNotPromotableError: no better than chance, or not better than the champion.
    """
    check_metric(metric)
    mlflow_client = mlflow_client or client()
    name = name or cfg.registered_model_name()
    challenger = resolve_version(name, version or cfg.CHALLENGER, mlflow_client=mlflow_client)
    if challenger.tags.get("no_better_than_chance") == "true":
        raise ModelNotPromotableError(
            f"version {challenger.version} is no better than chance (ROC AUC {challenger.tags.get('roc_auc')} "
            f"{challenger.tags.get('roc_auc_interval')}); it cannot be promoted, even with --force",
            field="promote",
        )
    champion = version_by_alias(mlflow_client, name, cfg.CHAMPION)
    history = _history(mlflow_client, name)
    target = str(challenger.version)
    previous = str(champion.version) if champion is not None else None
    if previous == target:
        return Decision(False, target, previous, "already champion")

    if champion is None:
        decision = Decision(True, target, None, "first champion: no model to compare with")
    elif force:
        decision = Decision(
            True, target, previous, f"forced over version {previous} without comparison"
        )
    else:
        new, old, reason = _compare(mlflow_client, name, challenger, champion, metric)
        if not m.is_better(metric, new, old):
            mlflow_client.set_model_version_tag(
                name, challenger.version, "abm_ml.promotion_refused", f"{_now()}: {reason}"
            )
            raise ModelNotPromotableError(
                f"not promoted: {reason}; use --force to promote anyway", field="promote"
            )
        decision = Decision(True, target, previous, reason, new, old, metric)

    _record(mlflow_client, name, target, "promoted", decision.reason, history + [target])
    return decision


def rollback(*, name: str | None = None, mlflow_client: MlflowClient | None = None) -> Decision:
    """Return ``champion`` to the version it pointed at before the last promotion."""
    mlflow_client = mlflow_client or client()
    name = name or cfg.registered_model_name()
    try:
        history = _history(mlflow_client, name)
    except MlflowException:
        raise AbmInputError(f"no registered model {name!r}", field="rollback") from None
    current = version_by_alias(mlflow_client, name, cfg.CHAMPION)
    if current is None or len(history) < 2:
        raise AbmInputError("there is no earlier champion to roll back to", field="rollback")
    history = history[:-1]
    target = history[-1]
    reason = f"rolled back from version {current.version} to version {target}"
    _record(mlflow_client, name, target, "rolled_back", reason, history)
    mlflow_client.set_model_version_tag(name, current.version, "abm_ml.rolled_back_from_at", _now())
    return Decision(True, target, str(current.version), reason)


def versions_table(
    name: str | None = None, *, mlflow_client: MlflowClient | None = None
) -> pd.DataFrame:
    """All versions with their aliases and headline tags, newest first."""
    mlflow_client = mlflow_client or client()
    name = name or cfg.registered_model_name()
    rows = []
    for found in mlflow_client.search_model_versions(f"name='{name}'"):
        mv = mlflow_client.get_model_version(name, found.version)  # search results lack aliases
        rows.append(
            {
                "version": int(mv.version),
                "aliases": ",".join(mv.aliases),
                "dataset": mv.tags.get("dataset"),
                "roc_auc": mv.tags.get("roc_auc"),
                "interval": mv.tags.get("roc_auc_interval"),
                "no_better_than_chance": mv.tags.get("no_better_than_chance"),
                "trained_at": mv.tags.get("trained_at"),
            }
        )
    return (
        pd.DataFrame(rows).sort_values("version", ascending=False, ignore_index=True)
        if rows
        else pd.DataFrame()
    )
