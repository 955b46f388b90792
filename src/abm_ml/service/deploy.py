"""Deployment: a registered MLflow version -> the BentoML model store, and back to what it is.

:func:`deploy` imports the version behind an alias (or a version number) into the BentoML model
store and records where it came from (MLflow model, version, alias, run, training date,
headline metrics, the scorer's features) as the Bento model's labels and metadata.
:class:`DeployedModel` reads them back for ``/metadata``, :func:`load_scorer` loads the
:class:`~abm_ml.modeling.scorer.AccountScorer` the Bento model holds, and :func:`check_deployed`
does both before ``abm-ml serve`` starts a server on it.

BentoML and MLflow are imported when a function is called, never at import, and nothing here
configures MLflow: the entry points do (``abm-ml deploy``, ``abm-ml serve``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from abm_ml import config as cfg
from abm_ml.errors import AbmInputError
from abm_ml.service.responses import json_safe
from abm_ml.service.settings import bento_model_name

if TYPE_CHECKING:
    import bentoml

    from abm_ml.modeling.scorer import AccountScorer

logger = logging.getLogger(__name__)

HEADLINE_METRICS = ("roc_auc", "pr_auc", "brier", "log_loss", "ece", "lift_top_decile")
HEADLINE_VELOCITY = ("mae_days", "coverage_p10_p90", "mae_improvement")


def _safe_uri(uri: str) -> str:
    """A tracking URI without credentials."""
    return re.sub(r"//[^/@]*@", "//", uri)


def _no_none(value: Any) -> Any:
    """BentoML metadata takes no None: drop None entries from dicts, turn None in lists into ''."""
    if isinstance(value, dict):
        return {k: _no_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [("" if v is None else _no_none(v)) for v in value]
    return value


def _headline_metrics(run_metrics: Mapping[str, float], tags: Mapping[str, str]) -> dict[str, Any]:
    from abm_ml.modeling.train import MODEL_NAME

    prefix = re.sub(r"[^A-Za-z0-9_\-. /]", "_", MODEL_NAME.replace("-", "_"))
    out: dict[str, Any] = {}
    for name, key in [(n, f"{prefix}_{n}") for n in HEADLINE_METRICS] + [
        (f"velocity_{n}", f"velocity_{prefix}_{n}") for n in HEADLINE_VELOCITY
    ]:
        if key in run_metrics:
            out[name] = {
                "value": run_metrics[key],
                "low": run_metrics.get(f"{key}_low"),
                "high": run_metrics.get(f"{key}_high"),
            }
    if "roc_auc" not in out and tags.get("roc_auc"):
        out["roc_auc"] = {"value": float(tags["roc_auc"]), "interval": tags.get("roc_auc_interval")}
    return json_safe(out)


def find_deployed(name: str, version: str, run_id: str | None, alias: str | None) -> Any | None:
    """The newest Bento model already imported from this MLflow version under this alias."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        models = bentoml.models.list(bento_model_name(name))
    except NotFound:
        return None
    matches = [
        m
        for m in models
        if m.info.labels.get("mlflow_model") == name
        and m.info.labels.get("mlflow_version") == str(version)
        and m.info.labels.get("mlflow_run_id", "") == (run_id or "")
        and m.info.labels.get("alias", "") == (alias or "")
        and m.info.metadata.get("features")
    ]
    return max(matches, key=lambda m: m.info.creation_time) if matches else None


def _lineage(
    mv: Any, name: str, alias: str, scorer: AccountScorer, tracking_uri: str
) -> tuple[dict[str, str], dict[str, Any]]:
    """The Bento model's labels and metadata: where the version came from and what it expects."""
    from mlflow.tracking import MlflowClient

    run_metrics: dict[str, float] = {}
    if mv.run_id:
        with contextlib.suppress(Exception):
            run_metrics = dict(MlflowClient().get_run(mv.run_id).data.metrics)
    tags = dict(mv.tags or {})
    scorer_meta = json_safe(dict(scorer.metadata))
    metadata = {
        "mlflow_model_uri": f"models:/{name}/{mv.version}",
        "mlflow_tracking_uri": _safe_uri(tracking_uri),
        "mlflow_version": str(mv.version),
        "alias": alias or None,
        "trained_at": tags.get("trained_at") or scorer_meta.get("trained_at"),
        "dataset": tags.get("dataset") or scorer_meta.get("dataset"),
        "metrics": _headline_metrics(run_metrics, tags),
        "version_tags": {k: v for k, v in tags.items() if not k.startswith("mlflow.")},
        "scorer_metadata": scorer_meta,
        "features": [json_safe(f.to_dict()) for f in scorer.features],
        "has_velocity_model": scorer.velocity is not None,
        "deployed_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
    }
    labels = {
        "mlflow_model": name,
        "mlflow_version": str(mv.version),
        "alias": alias,
        "mlflow_run_id": mv.run_id or "",
        "trained_at": str(metadata["trained_at"] or ""),
        "dataset": str(metadata["dataset"] or ""),
        "source": "abm-ml",
    }
    return labels, metadata


def deploy(
    alias: str = "champion", *, model_name: str | None = None, force: bool = False
) -> bentoml.Tag:
    """Import the MLflow version behind ``alias`` (or a version number) into the BentoML store.

    The Bento model is named after the registered model (``abm-account-scorer``). Its labels
    carry the MLflow model, version, alias and run; its metadata the training date, headline
    metrics, dataset and the scorer's features (the service builds its input contract from
    them). An import of the same version under the same alias is reused unless ``force``.

    Configures nothing: the entry point (``abm-ml deploy``, ``abm-ml serve``) points MLflow at
    the store first with :func:`abm_ml.registry.tracking.configure`.

    Returns:
        The Bento model's tag.

    Raises:
        AbmInputError: no such alias or version in the registry.
        RuntimeError: MLflow is not pointed at the configured store.
    """
    import bentoml
    import mlflow

    from abm_ml.registry.promotion import resolve_version

    uri = mlflow.get_tracking_uri()
    if uri != cfg.tracking_uri():
        raise RuntimeError(
            f"MLflow points at {_safe_uri(uri)!r}, not the configured store "
            f"{_safe_uri(cfg.tracking_uri())!r}: call abm_ml.registry.tracking.configure() "
            "in the entry point"
        )
    name = model_name or cfg.registered_model_name()
    mv = resolve_version(name, alias)
    alias_label = "" if str(alias).isdigit() else str(alias)
    if not force:
        existing = find_deployed(name, str(mv.version), mv.run_id, alias_label)
        if existing is not None:
            logger.info(
                "Bento model %s already holds %s version %s (%s)",
                existing.tag,
                name,
                mv.version,
                alias,
            )
            return existing.tag
    with tempfile.TemporaryDirectory(prefix="abm-deploy-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{mv.version}", dst_path=tmp
        )
        scorer = _read_scorer_in(local, f"MLflow {name!r} version {mv.version}")
        labels, metadata = _lineage(mv, name, alias_label, scorer, uri)
        bento_model = bentoml.mlflow.import_model(
            bento_model_name(name),
            local,
            labels=labels,
            metadata=_no_none(metadata),
            signatures={"predict": {"batchable": False}},
        )
    logger.info(
        "imported %s version %s (%s) as Bento model %s", name, mv.version, alias, bento_model.tag
    )
    return bento_model.tag


def _read_scorer_in(folder: str | Path, what: str) -> AccountScorer:
    """:func:`~abm_ml.registry.pyfunc.read_scorer` on a package folder, naming its scorer file.

    Raises:
        AbmInputError: no scorer file, or one that cannot be read; the message names ``what``
            and the file.
    """
    from abm_ml.registry.pyfunc import SCORER_FILE, read_scorer

    files = sorted(Path(folder).rglob(SCORER_FILE))
    if not files:
        return read_scorer(folder, what=what)  # raises: names what carries no scorer file
    return read_scorer(files[0], what=f"{what}, file {files[0]}")


def _describe(bento_model: Any) -> str:
    labels = dict(bento_model.info.labels)
    source = (
        f" (MLflow {labels['mlflow_model']!r} version {labels['mlflow_version']})"
        if labels.get("mlflow_model") and labels.get("mlflow_version")
        else ""
    )
    return f"Bento model {bento_model.tag}{source}"


def load_scorer(bento_model: Any) -> AccountScorer:
    """The :class:`AccountScorer` inside a Bento model imported by :func:`deploy`.

    Raises:
        AbmInputError: the scorer file is missing or unreadable, naming the Bento model, its
            MLflow version and the file.
    """
    return _read_scorer_in(bento_model.path, _describe(bento_model))


def check_deployed(tag: str) -> AccountScorer:
    """Load and check the Bento model ``tag`` the way the service will, before serving it.

    ``abm-ml serve`` calls this before it becomes ``bentoml serve``: a model that cannot be
    read fails here with one sentence, instead of a runner that crash-loops behind a live
    ``/healthz``.

    Raises:
        AbmInputError: no such Bento model, no feature list, or an unreadable scorer file.
    """
    import bentoml
    from bentoml.exceptions import BentoMLException

    try:
        bento_model = bentoml.models.get(tag)
    except BentoMLException as exc:  # NotFound, or a tag that does not parse
        raise AbmInputError(
            f"Bento model {tag} is not in the BentoML store {bentoml_home()} ({exc})",
            field="model",
        ) from None
    DeployedModel.from_bento(bento_model)
    return load_scorer(bento_model)


@dataclass
class DeployedModel:
    """What :func:`deploy` recorded on a Bento model; what ``/metadata`` reports."""

    tag: str
    name: str
    version: str | None
    alias: str | None
    run_id: str | None
    trained_at: str | None
    dataset: str | None
    calibration: str | None
    deployed_at: str | None
    metrics: dict[str, Any]
    features: list[dict[str, Any]]

    @classmethod
    def from_bento(cls, bento_model: Any) -> DeployedModel:
        """Read a Bento model's labels and metadata.

        Raises:
            AbmInputError: the Bento model was not imported by :func:`deploy` (no feature list).
        """
        labels = dict(bento_model.info.labels)
        meta = dict(bento_model.info.metadata)
        scorer_meta = meta.get("scorer_metadata") or {}
        features = meta.get("features")
        if not features:
            raise AbmInputError(
                f"Bento model {bento_model.tag} has no feature list in its metadata; "
                "import it with abm_ml.service.deploy.deploy (abm-ml deploy)",
                field="model",
            )
        return cls(
            tag=str(bento_model.tag),
            name=labels.get("mlflow_model") or bento_model.tag.name,
            version=labels.get("mlflow_version") or None,
            alias=labels.get("alias") or None,
            run_id=labels.get("mlflow_run_id") or None,
            trained_at=meta.get("trained_at") or scorer_meta.get("trained_at"),
            dataset=meta.get("dataset") or scorer_meta.get("dataset"),
            calibration=scorer_meta.get("calibration"),
            deployed_at=meta.get("deployed_at"),
            metrics=dict(meta.get("metrics") or {}),
            features=[dict(f) for f in features],
        )

    def ref(self) -> dict[str, Any]:
        """The ``model`` block of every scoring response."""
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "bento_model": self.tag,
        }


# --------------------------------------------------------------------------------------------
# Where the BentoML store lives
# --------------------------------------------------------------------------------------------


def bentoml_home() -> str:
    """The BentoML home this process uses (``BENTOML_HOME`` or BentoML's default)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    return str(BentoMLContainer.bentoml_home.get())


@contextlib.contextmanager
def use_bentoml_home(home: str | Path) -> Iterator[Path]:
    """Point BentoML's stores (and child processes) at ``home`` for the duration of the block.

    Sets ``BENTOML_HOME`` and overrides BentoML's already-resolved store providers, so it also
    works after BentoML has touched its default home in this process. Creates ``home``'s folders.
    """
    from bentoml._internal.bento import BentoStore
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    home = Path(home).resolve()
    for sub in ("bentos", "models", "envs", "tmp"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    previous = os.environ.get("BENTOML_HOME")
    os.environ["BENTOML_HOME"] = str(home)
    c = BentoMLContainer
    try:
        with contextlib.ExitStack() as stack:
            for provider, value in (
                (c.bentoml_home, str(home)),
                (c.bento_store_dir, str(home / "bentos")),
                (c.model_store_dir, str(home / "models")),
                (c.env_store_dir, str(home / "envs")),
                (c.tmp_bento_store_dir, str(home / "tmp")),
                (c.bento_store, BentoStore(str(home / "bentos"))),
                (c.tmp_bento_store, BentoStore(str(home / "tmp"))),
                (c.model_store, ModelStore(str(home / "models"))),
            ):
                stack.enter_context(provider.patch(value))
            yield home
    finally:
        if previous is None:
            os.environ.pop("BENTOML_HOME", None)
        else:
            os.environ["BENTOML_HOME"] = previous
