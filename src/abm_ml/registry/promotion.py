"""Champion and challenger: promotion on evidence, rollback in one step, an audit trail in MLflow.

`promote` moves the ``champion`` alias to the challenger only if the challenger beats the
champion on the challenger's own holdout (the most recent period), scoring both models on the
same rows; `--force` skips the comparison but never promotes a model that is no better than
chance. `rollback` returns ``champion`` to the version it pointed at before. Every move is
recorded in tags: on the model version (when, why, by whom) and on the registered model
(``abm_ml.champion_history``, the ordered list of champion versions).
"""

from __future__ import annotations

import getpass
import json
import tempfile
from dataclasses import dataclass

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from abm_ml import config as cfg
from abm_ml.errors import AbmInputError, ModelNotPromotableError
from abm_ml.modeling import metrics as m
from abm_ml.registry.pyfunc import read_scorer
from abm_ml.registry.tracking import configure

HISTORY_TAG = "abm_ml.champion_history"


@dataclass
class Decision:
    promoted: bool
    version: str
    previous: str | None
    reason: str
    challenger_auc: float | None = None
    champion_auc: float | None = None


def _now() -> str:
    return pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")


def _version_by_alias(client: MlflowClient, name: str, alias: str):
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def resolve_version(name: str, ref: str):
    """A model version from an alias ('champion') or a version number ('3')."""
    client = MlflowClient()
    ref = str(ref)
    if ref.isdigit():
        try:
            return client.get_model_version(name, ref)
        except MlflowException:
            raise AbmInputError(f"model {name!r} has no version {ref}", field="version") from None
    mv = _version_by_alias(client, name, ref)
    if mv is None:
        raise AbmInputError(
            f"model {name!r} has no version with alias {ref!r}; train and promote first",
            field="alias",
        )
    return mv


def load_scorer(name: str, ref: str):
    """The :class:`~abm_ml.modeling.scorer.AccountScorer` of a registered version, and the version."""
    mv = resolve_version(name, ref)
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{mv.version}", dst_path=tmp
        )
        return read_scorer(local, what=f"version {mv.version} of {name!r}"), mv


def _holdout(run_id: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="data/holdout.parquet", dst_path=tmp
        )
        return pd.read_parquet(path)


def _history(client: MlflowClient, name: str) -> list[str]:
    tags = client.get_registered_model(name).tags
    return json.loads(tags.get(HISTORY_TAG, "[]"))


def _record(
    client: MlflowClient, name: str, version: str, action: str, reason: str, history: list[str]
) -> None:
    client.set_registered_model_alias(name, cfg.CHAMPION, version)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    client.set_registered_model_tag(
        name,
        "abm_ml.last_action",
        json.dumps({"action": action, "version": version, "at": _now(), "reason": reason}),
    )
    client.set_model_version_tag(name, version, f"abm_ml.{action}_at", _now())
    client.set_model_version_tag(name, version, f"abm_ml.{action}_reason", reason)
    client.set_model_version_tag(name, version, f"abm_ml.{action}_by", getpass.getuser())


def promote(
    *,
    name: str | None = None,
    version: str | None = None,
    force: bool = False,
    metric: str = "roc_auc",
) -> Decision:
    """Make the challenger (or ``version``) champion if it beats the champion on the same holdout.

    Raises:
        ModelNotPromotableError: no better than chance, or not better than the champion.
    """
    configure()
    name = name or cfg.registered_model_name()
    client = MlflowClient()
    challenger = resolve_version(name, version or cfg.CHALLENGER)
    if challenger.tags.get("no_better_than_chance") == "true":
        raise ModelNotPromotableError(
            f"version {challenger.version} is no better than chance (ROC AUC {challenger.tags.get('roc_auc')} "
            f"{challenger.tags.get('roc_auc_interval')}); it cannot be promoted, even with --force",
            field="promote",
        )
    champion = _version_by_alias(client, name, cfg.CHAMPION)
    history = _history(client, name)
    target = str(challenger.version)
    previous = str(champion.version) if champion is not None else None
    if previous == target:
        return Decision(False, target, previous, "already champion")

    if champion is None:
        reason = "first champion: no model to compare with"
        decision = Decision(True, target, None, reason)
    elif force:
        decision = Decision(
            True, target, previous, f"forced over version {previous} without comparison"
        )
    else:
        holdout = _holdout(challenger.run_id)
        y = (holdout["outcome"] == "won").to_numpy(dtype=int)
        scores = {}
        for label, mv in (("challenger", challenger), ("champion", champion)):
            scorer, _ = load_scorer(name, mv.version)
            missing = [f for f in scorer.feature_names if f not in holdout.columns]
            if len(missing) == len(scorer.feature_names):
                raise ModelNotPromotableError(
                    f"champion version {mv.version} uses none of the challenger's features (another dataset?); use --force to replace it",
                    field="promote",
                )
            propensity = scorer.score(holdout, with_reasons=False)["propensity"].to_numpy()
            scores[label] = m.propensity_metrics(y, propensity, n_boot=0)[metric].value
        better = m.is_better(metric, scores["challenger"], scores["champion"])
        reason = (
            f"{metric} on the challenger's holdout ({len(holdout)} rows): challenger v{challenger.version} "
            f"{scores['challenger']:.4f} vs champion v{previous} {scores['champion']:.4f}"
        )
        if not better:
            client.set_model_version_tag(
                name, challenger.version, "abm_ml.promotion_refused", f"{_now()}: {reason}"
            )
            raise ModelNotPromotableError(
                f"not promoted: {reason}; use --force to promote anyway", field="promote"
            )
        decision = Decision(
            True, target, previous, reason, scores["challenger"], scores["champion"]
        )

    _record(client, name, target, "promoted", decision.reason, history + [target])
    return decision


def rollback(*, name: str | None = None) -> Decision:
    """Return ``champion`` to the version it pointed at before the last promotion."""
    configure()
    name = name or cfg.registered_model_name()
    client = MlflowClient()
    try:
        history = _history(client, name)
    except MlflowException:
        raise AbmInputError(f"no registered model {name!r}", field="rollback") from None
    current = _version_by_alias(client, name, cfg.CHAMPION)
    if current is None or len(history) < 2:
        raise AbmInputError("there is no earlier champion to roll back to", field="rollback")
    history = history[:-1]
    target = history[-1]
    reason = f"rolled back from version {current.version} to version {target}"
    _record(client, name, target, "rolled_back", reason, history)
    client.set_model_version_tag(name, current.version, "abm_ml.rolled_back_from_at", _now())
    return Decision(True, target, str(current.version), reason)


def versions_table(name: str | None = None) -> pd.DataFrame:
    """All versions with their aliases and headline tags, newest first."""
    configure()
    name = name or cfg.registered_model_name()
    client = MlflowClient()
    rows = []
    for found in client.search_model_versions(f"name='{name}'"):
        mv = client.get_model_version(name, found.version)  # search results carry no aliases
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
