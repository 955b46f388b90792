"""Where the registry lives and how to read from it: versions, their scorers, their holdouts.

Library functions here take an :class:`~mlflow.tracking.MlflowClient` (built from
:mod:`abm_ml.config` when omitted) and change no global state. Only entry points (the CLI,
the service start-up, the tests) call :func:`configure`, which creates the local store's
folder and points MLflow's fluent API at it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from abm_ml import config as cfg
from abm_ml.errors import AbmInputError
from abm_ml.modeling.scorer import AccountScorer
from abm_ml.redact import mask_credentials
from abm_ml.registry.pyfunc import read_scorer

HOLDOUT_ARTIFACT = "data/holdout.parquet"
"""The training run's test rows (features, outcome, days): promotion and evaluation reuse them."""
PREDICTIONS_ARTIFACT = "data/holdout_predictions.parquet"
"""What the packaged scorer and the baselines predicted for those rows at training."""


HTTP_RETRY_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}
"""Bounds on MLflow's HTTP retries, set unless the user set them: MLflow's own defaults (7
retries, backoff factor 2, 120 s timeout) keep a command silent for minutes on a server that
does not answer; these give up after about 10 s on a refused connection."""


def configure() -> str:
    """Entry points only: check the store, then point MLflow at it.

    The default local store's folder is created; a store the user named must exist (a SQLite
    file's folder, a tracking server that answers), so that a mistyped URI is one clear error
    and not an empty database or a silent wait.

    Returns:
        The tracking URI (``MLFLOW_TRACKING_URI`` or SQLite under :func:`cfg.models_dir`).

    Raises:
        AbmInputError: the named SQLite store's folder does not exist, or the tracking server
            does not answer (the message names the URI, credentials masked).
    """
    uri = cfg.tracking_uri()
    for name, value in HTTP_RETRY_DEFAULTS.items():
        os.environ.setdefault(name, value)
    _check_local_store(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(cfg.registry_uri())
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
    return uri


def _check_local_store(uri: str) -> None:
    if not uri.startswith("sqlite:///"):
        return
    folder = Path(uri.removeprefix("sqlite:///")).parent
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        folder.mkdir(parents=True, exist_ok=True)  # the default store under models/
    elif not folder.is_dir():
        raise AbmInputError(
            f"the folder of the MLflow store does not exist: {folder} (check MLFLOW_TRACKING_URI)",
            source=mask_credentials(uri),
        )
    _write_ahead_log(Path(uri.removeprefix("sqlite:///").split("?", 1)[0]))


def _write_ahead_log(database: Path) -> None:
    """Put a SQLite store in write-ahead-log mode, a setting the file keeps.

    MLflow commits each param, metric, tag and migration step on its own, and with SQLite's
    default rollback journal every commit waits for several fsyncs: measured on a 2-core CI
    machine, about 25 ms per commit, 8 s to create a store and 2.7 s for 100 params. In WAL
    mode a commit is one append to the log, as durable (the synchronous level is unchanged),
    and readers (a serving process resolving an alias) do not block a training's writes.
    Only a speed-up: a store that refuses (locked for longer than the timeout) stays as it is.
    WAL needs the database on a local file system, as SQLite itself advises for any store.
    """
    if str(database) in ("", ":memory:"):
        return
    with (
        contextlib.suppress(sqlite3.Error),
        contextlib.closing(sqlite3.connect(database, timeout=10)) as connection,
    ):
        connection.execute("PRAGMA journal_mode=WAL")


def _check_server(uri: str) -> None:
    """One cheap request, retried within :data:`HTTP_RETRY_DEFAULTS`'s bounds."""
    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as error:  # noqa: BLE001 - refused, timed out, DNS, TLS, auth: all the URI's fault
        text = str(error)
        known = ("Connection refused", "timed out", "Name or service not known", "SSL")
        reason = (
            next((k for k in known if k in text), None)
            or mask_credentials((text.strip().splitlines() or [type(error).__name__])[0])[:160]
        )
        raise AbmInputError(
            f"the MLflow tracking server does not answer ({reason}, "
            f"{os.environ['MLFLOW_HTTP_REQUEST_MAX_RETRIES']} retries); check MLFLOW_TRACKING_URI",
            source=mask_credentials(uri),
        ) from None


def client(tracking_uri: str | None = None) -> MlflowClient:
    """A client of ``tracking_uri`` (default: the configured store); sets nothing globally."""
    if tracking_uri is None:
        return MlflowClient(tracking_uri=cfg.tracking_uri(), registry_uri=cfg.registry_uri())
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def version_by_alias(mlflow_client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version ``alias`` points at, or None."""
    try:
        return mlflow_client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def resolve_version(
    name: str, ref: str, *, mlflow_client: MlflowClient | None = None
) -> ModelVersion:
    """A model version from an alias ('champion') or a version number ('3').

    Raises:
        AbmInputError: no such version or alias.
    """
    mlflow_client = mlflow_client or client()
    ref = str(ref)
    if ref.isdigit():
        try:
            return mlflow_client.get_model_version(name, ref)
        except MlflowException:
            raise AbmInputError(f"model {name!r} has no version {ref}", field="version") from None
    mv = version_by_alias(mlflow_client, name, ref)
    if mv is None:
        raise AbmInputError(
            f"model {name!r} has no version with alias {ref!r}; train and promote first",
            field="alias",
        )
    return mv


def load_scorer(
    name: str, ref: str, *, mlflow_client: MlflowClient | None = None
) -> tuple[AccountScorer, ModelVersion]:
    """The :class:`AccountScorer` of a registered version (alias or number), and the version."""
    mlflow_client = mlflow_client or client()
    mv = resolve_version(name, ref, mlflow_client=mlflow_client)
    location = mlflow_client.get_model_version_download_uri(name, mv.version)
    with tempfile.TemporaryDirectory(prefix="abm-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=location, dst_path=tmp, tracking_uri=mlflow_client.tracking_uri
        )
        return read_scorer(local, what=f"version {mv.version} of {name!r}"), mv


def download_run_table(
    run_id: str, artifact: str = HOLDOUT_ARTIFACT, *, mlflow_client: MlflowClient | None = None
) -> pd.DataFrame:
    """A parquet artifact of a training run: the holdout rows by default.

    Raises:
        AbmInputError: the run did not log it (trained by a release that did not).
    """
    mlflow_client = mlflow_client or client()
    with tempfile.TemporaryDirectory(prefix="abm-run-") as tmp:
        try:
            path = mlflow_client.download_artifacts(run_id, artifact, tmp)
        except (MlflowException, OSError):
            raise AbmInputError(
                f"training run {run_id} has no {artifact} artifact", field="run"
            ) from None
        return pd.read_parquet(path)


INPUT_SPEC_TAG = "abm_ml.input_spec"
"""Version tag holding the input part of the training spec, readable without the model."""
_MAX_TAG_CHARS = 5000


def input_spec_tag(input_spec: dict | None) -> dict[str, str]:
    """The version tag carrying ``input_spec`` as JSON, or nothing when absent or too long."""
    if not input_spec:
        return {}
    text = json.dumps(input_spec, sort_keys=True)
    return {INPUT_SPEC_TAG: text} if len(text) <= _MAX_TAG_CHARS else {}


def registered_input_spec(
    name: str, ref: str, *, mlflow_client: MlflowClient | None = None
) -> dict | None:
    """The input spec of a registered version from its tag (no download), or None.

    Lets ``rank`` check a scoring file's columns before the model itself is loaded.
    """
    mv = resolve_version(name, ref, mlflow_client=mlflow_client)
    text = (mv.tags or {}).get(INPUT_SPEC_TAG)
    return json.loads(text) if text else None
