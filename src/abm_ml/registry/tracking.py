"""MLflow as the system of record: every run logged, every model a registered version.

A training run logs params, metrics with their intervals, the dataset's hash and spec, the git
revision, the validation summary and rejects, the split, plots, the model card, the holdout
rows (so a later `promote` compares models on the same recent holdout) with what the packaged
scorer predicted for them, and registers the packaged pyfunc as a new version of one
registered model with the alias ``challenger``. It logs to the store the entry point
configured (:func:`abm_ml.registry.store.configure`).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow.tracking import MlflowClient

from abm_ml import config as cfg
from abm_ml.modeling import metrics as m
from abm_ml.modeling.train import MODEL_NAME, TrainingResult
from abm_ml.monitoring.profile import attach_reference_profile
from abm_ml.redact import mask_credentials
from abm_ml.registry.card import model_card, verdict
from abm_ml.registry.pyfunc import SCORER_ARTIFACT, input_example, save_scorer, signature
from abm_ml.registry.store import (
    HOLDOUT_ARTIFACT,
    PREDICTIONS_ARTIFACT,
    client,
    configure,
    input_spec_tag,
    version_by_alias,
)
from abm_ml.reporting.training_report import training_charts

__all__ = [
    "claim_challenger",
    "configure",
    "fail_abandoned_runs",
    "failure_message",
    "git_revision",
    "log_failed_training",
    "log_training",
    "prepare_store",
    "register_version",
]

HOST_TAG, PID_TAG = "abm_ml.host", "abm_ml.pid"
"""Where the training that logs a run runs: a later train marks the run FAILED if it is gone."""
ABANDONED_AFTER_HOURS = 48

ERROR_TAG = "abm_ml.error"
"""Tag of a FAILED run: the exception in one line."""
PIP_REQUIREMENTS = [
    "lightgbm",
    "catboost",  # the chosen propensity model may be, or blend in, a CatBoost member
    "scikit-learn",
    "pandas",
    "numpy",
    "joblib",
    "mlflow",
]


def _experiment(name: str) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = cfg.artifact_root() if cfg.tracking_uri().startswith("sqlite:") else None
    return mlflow.create_experiment(name, artifact_location=location)


def experiment_name(dataset_name: str) -> str:
    """The MLflow experiment of a dataset's training runs."""
    return f"abm-ml/{dataset_name}"


def prepare_store(dataset_name: str) -> Future[str]:
    """Open the configured store and find (or create) the dataset's experiment, in a thread.

    For an entry point to call while the models train: opening a store costs seconds of
    Python (MLflow's SQLAlchemy layer, a new store's ~50 schema migrations) that would
    otherwise wait for the training to end, while the training spends most of its time in
    LightGBM, which releases the GIL. Wait for the future before logging anything (two threads
    must not create one store's tables at once); an error it holds is met again, and reported,
    by the logging that follows.
    """
    pool = ThreadPoolExecutor(1, thread_name_prefix="abm-ml-store")
    try:
        return pool.submit(_experiment, experiment_name(dataset_name))
    finally:
        pool.shutdown(wait=False)


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cfg.PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"],
            cwd=cfg.PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        if rev.returncode != 0:
            return "unknown"
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _finite(values: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if v is not None and np.isfinite(v)}


def _run_params(result: TrainingResult) -> dict[str, str]:
    params = {
        **{f"lgb_{k}": v for k, v in result.config.lgb_params().items()},
        "seed": result.config.seed,
        "refit": result.config.refit,
        "propensity_model": result.propensity_choice,
        "velocity_model": next(
            (r["candidate"] for r in result.velocity_leaderboard if r["chosen"]), "none"
        ),
        "search_budget_s": result.config.search_budget_s or "default candidates",
        "candidates_compared_on": (
            "cross-fitted train + validation"
            if result.leaderboard and result.leaderboard[0].get("cross_fitted")
            else "validation rows"
        ),
        "n_boot": result.config.n_boot,
        "capacity": result.config.capacity or "10% of test",
        "features": ",".join(result.scorer.feature_names)[:6000],
        **{f"best_iteration_{k}": v for k, v in result.best_iterations.items()},
        **{f"split_{k}": v for k, v in result.split.describe().items()},
    }
    return {k: str(v)[:6000] for k, v in params.items()}


def _run_metrics(result: TrainingResult) -> dict[str, float]:
    """Every metric with its interval bounds, the checks, timings and row counts (finite only)."""
    summary = result.dataset.summary
    flat: dict[str, float] = {}
    for name, values in result.propensity.items():
        flat.update(m.flatten_for_mlflow(name.replace("-", "_"), values))
    for name, values in result.velocity.items():
        flat.update(m.flatten_for_mlflow(f"velocity_{name.replace('-', '_')}", values))
    flat.update(result.velocity_extra)
    flat.update(result.calibration_choice)
    flat.update({f"time_{k}": v for k, v in result.timings.items()})
    flat.update(_leaderboard_metrics(result.leaderboard))
    flat.update(
        {
            f"velocity_candidate_{row['candidate']}_valid_mae_days": row["valid_mae_days"]
            for row in result.velocity_leaderboard
        }
    )
    flat.update(
        {
            "rows_read": summary.rows_read,
            "rows_accepted": summary.accepted,
            "rows_rejected": summary.rejected,
        }
    )
    return _finite(flat)


LEADERBOARD_METRICS = ("valid_log_loss_calibrated", "valid_roc_auc", "fit_s", "explain_ms_per_1k")


def _leaderboard_metrics(leaderboard: list[dict]) -> dict[str, float]:
    """``candidate_<name>_<metric>`` for each propensity candidate (the blend as ``blend``)."""
    out = {}
    for row in leaderboard:
        name = "blend" if row["kind"] == "blend" else row["candidate"]
        out.update({f"candidate_{name}_{k}": row[k] for k in LEADERBOARD_METRICS})
    return out


def _write_data(result: TrainingResult, out: Path) -> None:
    """Spec, validation summary, rejects, split, leakage findings, holdout and its predictions."""
    ds = result.dataset
    (out / "data").mkdir()
    # As written (with its ${VAR}s): the resolved spec may hold a password from the environment.
    written = ds.spec.as_written or yaml.safe_dump(
        ds.spec.model_dump(mode="json", exclude_none=True), sort_keys=False
    )
    (out / "data/spec.yaml").write_text(mask_credentials(written))
    (out / "data/validation_summary.json").write_text(
        json.dumps(ds.summary.to_dict(), indent=2, default=str)
    )
    ds.rejects.astype(str).to_csv(out / "data/rejects.csv", index=False)
    (out / "data/split.json").write_text(json.dumps(result.split.describe(), indent=2))
    (out / "data/leakage.json").write_text(
        json.dumps([f.to_dict() for f in result.leak_findings], indent=2)
    )
    result.holdout.to_parquet(out / HOLDOUT_ARTIFACT, index=False)
    result.holdout_predictions.to_parquet(out / PREDICTIONS_ARTIFACT, index=False)
    m.metrics_table(result.propensity).to_csv(out / "data/propensity_metrics.csv")
    if result.velocity:
        m.metrics_table(result.velocity).to_csv(out / "data/velocity_metrics.csv")
    result.feature_importance.to_csv(out / "data/feature_importance.csv", index=False)
    if result.leaderboard:
        pd.DataFrame(result.leaderboard).to_csv(out / "data/leaderboard.csv", index=False)


def _write_plots(result: TrainingResult, out: Path) -> None:
    """The run's charts (calibration, gains, velocity residuals, SHAP) into ``out/plots``."""
    folder = out / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    for name, png in training_charts(result).items():
        (folder / name).write_bytes(png)


def _log_model(result: TrainingResult, out: Path):
    """Log the packaged scorer as an MLflow pyfunc (models from code) in the active run."""
    scorer_path = save_scorer(result.scorer, out / "scorer")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*signature.*")
        warnings.filterwarnings("error", message=".*input example.*")
        return mlflow.pyfunc.log_model(
            name="model",
            # Models from code: MLflow loads this file instead of unpickling a Python object.
            python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            artifacts={SCORER_ARTIFACT: str(scorer_path)},
            signature=signature(result.scorer),
            input_example=input_example(result.scorer, result.holdout),
            pip_requirements=PIP_REQUIREMENTS,
        )


def log_training(
    result: TrainingResult, *, register: bool = True, model_name: str | None = None
) -> dict:
    """Log a training result to MLflow; register the model with alias ``challenger``.

    Logs to the store the entry point configured with :func:`configure` (MLflow's model
    logging only works through its global tracking URI); this function configures nothing.

    Returns:
        ``{"run_id", "experiment_id", "model_name", "version", "challenger", "model_uri",
        "card"}`` (version None when not registered; ``challenger`` is the version the alias
        points at afterwards, another one when a concurrent training registered later).

    Raises:
        RuntimeError: MLflow is not pointed at the configured store (call :func:`configure`).
    """
    if mlflow.get_tracking_uri() != cfg.tracking_uri():
        raise RuntimeError(
            f"MLflow logs to {mask_credentials(mlflow.get_tracking_uri())!r}, not the configured "
            f"store {mask_credentials(cfg.tracking_uri())!r}: call abm_ml.registry.store.configure() in the entry point"
        )
    model_name = model_name or cfg.registered_model_name()
    ds = result.dataset
    experiment_id = _experiment(experiment_name(ds.spec.name))
    fail_abandoned_runs(experiment_id)
    with (
        mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{ds.spec.name}") as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        try:
            version, info, card = _log_run(result, run, Path(tmp), model_name, register=register)
        except Exception as error:
            # MLflow ends the run FAILED on the way out; the tag says why, in one line.
            mlflow.set_tag(ERROR_TAG, failure_message(error))
            raise
    holder = version_by_alias(client(), model_name, cfg.CHALLENGER) if version else None
    return {
        "run_id": run.info.run_id,
        "experiment_id": experiment_id,
        "model_name": model_name,
        "version": version,
        # What the alias points at once this run is done: a concurrent training may hold it.
        "challenger": str(holder.version) if holder is not None else None,
        "model_uri": info.model_uri,
        "card": card,
    }


def log_failed_training(dataset_name: str, error: BaseException) -> str:
    """Record a training that failed before it had a result: a FAILED run saying why; its id."""
    experiment_id = _experiment(experiment_name(dataset_name))
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{dataset_name}") as run:
        mlflow.set_tags({"abm_ml.dataset": dataset_name, ERROR_TAG: failure_message(error)})
    client().set_terminated(run.info.run_id, status="FAILED")
    return run.info.run_id


def failure_message(error: BaseException) -> str:
    """``ValueError: what went wrong``, on one line and short enough for an MLflow tag."""
    text = " ".join(mask_credentials(str(error)).split())
    return f"{type(error).__name__}: {text}"[:4000]


def _log_run(result: TrainingResult, run, out: Path, model_name: str, *, register: bool):
    """Everything logged inside the active run: (version or None, model info, model card)."""
    ds = result.dataset
    mlflow.set_tags(
        {
            "abm_ml.dataset": ds.spec.name,
            "abm_ml.dataset_sha256": ds.sha256,
            "abm_ml.git_revision": git_revision(),
            "abm_ml.split_method": result.split.method,
            "abm_ml.no_better_than_chance": str(result.no_better_than_chance).lower(),
            "abm_ml.calibration": result.scorer.calibrator.method,
            "abm_ml.verdict": verdict(result)[:4000],
            HOST_TAG: socket.gethostname(),
            PID_TAG: str(os.getpid()),
        }
    )
    mlflow.log_params(_run_params(result))
    mlflow.log_metrics(_run_metrics(result))
    _write_data(result, out)
    mlflow.log_artifacts(str(out / "data"), artifact_path="data")
    _write_plots(result, out)
    mlflow.log_artifacts(str(out / "plots"), artifact_path="plots")
    # Before packaging: the scorer carries its training profile for `abm-ml monitor`.
    attach_reference_profile(result)
    info = _log_model(result, out)
    version = None
    if register:
        version = register_version(
            info.model_uri, run.info.run_id, result, model_name, model_id=info.model_id
        )
    card = model_card(result, version=version, run_id=run.info.run_id)
    mlflow.log_text(card, "model_card.md")
    return version, info, card


def register_version(
    model_uri: str,
    run_id: str,
    result: TrainingResult,
    model_name: str,
    *,
    model_id: str | None = None,
) -> str:
    """Register the logged model as a new version of ``model_name``, alias ``challenger``.

    ``model_id`` names MLflow's logged model behind ``model_uri``; a tracking server refuses a
    ``models:/m-...`` source without it.
    """
    registry = client()
    try:
        registry.get_registered_model(model_name)
    except mlflow.exceptions.MlflowException:
        registry.create_registered_model(
            model_name, description="abm-ml account scorer: propensity, days to close, reasons."
        )
    mv = registry.create_model_version(
        model_name,
        source=model_uri,
        run_id=run_id,
        model_id=model_id,
        tags={
            "dataset": result.dataset.spec.name,
            "dataset_sha256": result.dataset.sha256,
            "roc_auc": f"{result.propensity[MODEL_NAME]['roc_auc'].value:.4f}",
            "roc_auc_interval": f"[{result.propensity[MODEL_NAME]['roc_auc'].low:.4f}, {result.propensity[MODEL_NAME]['roc_auc'].high:.4f}]",
            "no_better_than_chance": str(result.no_better_than_chance).lower(),
            "trained_at": result.scorer.metadata["trained_at"],
            **input_spec_tag(result.scorer.input_spec),
        },
    )
    claim_challenger(registry, model_name, str(mv.version))
    return str(mv.version)


def claim_challenger(registry: MlflowClient, model_name: str, version: str) -> bool:
    """Point ``challenger`` at ``version`` unless it already points at a newer version.

    Two trainings finishing together must not leave the alias on the older one (the later
    registration wins, as if they had run one after the other). Returns whether it moved.
    """
    current = version_by_alias(registry, model_name, cfg.CHALLENGER)
    if current is not None and int(current.version) > int(version):
        return False
    registry.set_registered_model_alias(model_name, cfg.CHALLENGER, version)
    return True


def fail_abandoned_runs(
    experiment_id: str, *, mlflow_client: MlflowClient | None = None
) -> list[str]:
    """Mark FAILED the runs of an experiment left RUNNING by a training that was killed.

    The rule, chosen to never end a live run: a RUNNING run is abandoned when it was started
    on this host (tag ``abm_ml.host``) by a process (tag ``abm_ml.pid``) that no longer
    exists, or when it started more than :data:`ABANDONED_AFTER_HOURS` hours ago on any host
    (no training of this project logs for that long). Runs without these tags (older
    releases) are judged by age only. Each marked run gets a tag saying why.

    Returns:
        The ids of the runs marked FAILED.
    """
    registry = mlflow_client or client()
    now_ms = time.time() * 1000
    marked = []
    for run in registry.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'"):
        tags = run.data.tags
        age_hours = (now_ms - run.info.start_time) / 3_600_000
        why = None
        if tags.get(HOST_TAG) == socket.gethostname() and not _alive(tags.get(PID_TAG)):
            why = f"process {tags.get(PID_TAG)} on {tags.get(HOST_TAG)} is gone"
        elif age_hours > ABANDONED_AFTER_HOURS:
            why = f"still RUNNING {age_hours:.0f} h after it started"
        if why:
            registry.set_tag(
                run.info.run_id, "abm_ml.marked_failed", f"{why}; marked by a later train"
            )
            registry.set_terminated(run.info.run_id, status="FAILED")
            marked.append(run.info.run_id)
    return marked


def _alive(pid: str | None) -> bool:
    """Whether a process with this id exists on this host (unknown ids count as alive)."""
    try:
        os.kill(int(pid), 0)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True
