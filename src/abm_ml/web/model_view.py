"""What the model page shows, read from the MLflow registry: champion, challenger, metrics, capacity.

Each aliased version's training run gives its headline metrics with their bootstrap intervals
(logged as ``<metric>``, ``<metric>_low``, ``<metric>_high``), the capacity table computed from
the run's logged holdout predictions by the training report's own
:func:`~abm_ml.reporting.training_report.capacity_analysis`, and the training report (logged
under ``report/``) that the page serves as a link.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from abm_ml import config as cfg
from abm_ml.modeling.train import MODEL_NAME
from abm_ml.reporting.training_report import BASELINES

logger = logging.getLogger(__name__)

HEADLINE_METRICS = (
    ("roc_auc", "ROC AUC"),
    ("pr_auc", "PR AUC"),
    ("precision_at_k", "precision at k"),
    ("brier", "Brier score"),
)
ALIASES = (cfg.CHAMPION, cfg.CHALLENGER)


@dataclass
class VersionView:
    """One aliased model version as the page shows it."""

    alias: str
    version: str
    run_id: str
    created: str
    metrics: list[dict[str, Any]] = field(default_factory=list)
    capacity: dict[str, Any] | None = None
    report_name: str | None = None
    note: str | None = None
    also: str | None = None
    """The other alias when one version holds both."""


def _metric_rows(metrics: dict[str, float]) -> list[dict[str, Any]]:
    """Headline metrics of the model and its baselines (keys as the tracking module logs them)."""
    model = MODEL_NAME.replace("-", "_")
    rows = []
    for key, label in HEADLINE_METRICS:
        name = f"{model}_{key}"
        if name not in metrics:
            continue
        rows.append(
            {
                "label": label,
                "value": metrics[name],
                "low": metrics.get(f"{name}_low"),
                "high": metrics.get(f"{name}_high"),
                "baselines": {
                    baseline: metrics[f"{baseline}_{key}"]
                    for baseline in BASELINES
                    if f"{baseline}_{key}" in metrics
                },
            }
        )
    return rows


def _capacity(client: Any, run_id: str) -> dict[str, Any] | None:
    """The training report's capacity analysis from the run's holdout artifacts, or None."""
    from abm_ml.registry.store import download_run_table
    from abm_ml.registry.tracking import HOLDOUT_ARTIFACT, PREDICTIONS_ARTIFACT
    from abm_ml.reporting.training_report import capacity_analysis

    try:
        predictions = download_run_table(run_id, PREDICTIONS_ARTIFACT, mlflow_client=client)
        holdout = download_run_table(run_id, HOLDOUT_ARTIFACT, mlflow_client=client)
        return capacity_analysis(
            SimpleNamespace(holdout_predictions=predictions, holdout=holdout)  # type: ignore[arg-type]
        )
    except Exception as error:  # noqa: BLE001 - the page shows the rest without the table
        logger.warning("no capacity table for run %s: %s", run_id, type(error).__name__)
        return None


def _report_name(client: Any, run_id: str) -> str | None:
    try:
        files = client.list_artifacts(run_id, "report")
    except Exception:  # noqa: BLE001
        return None
    names = [Path(f.path).name for f in files if f.path.endswith(".html")]
    return names[0] if names else None


class ModelView:
    """Reads the registry once per version and keeps what it read (versions never change)."""

    def __init__(self, model_name: str | None = None):
        self.model_name = model_name or cfg.registered_model_name()
        self._cache: dict[tuple[str, str], VersionView] = {}

    def _client(self):
        from abm_ml.registry.store import client

        return client()

    def versions(self) -> tuple[list[VersionView], str | None]:
        """The champion and challenger (when set), or an explanation of why there are none."""
        from abm_ml.registry.store import version_by_alias

        try:
            client = self._client()
            found = [(alias, version_by_alias(client, self.model_name, alias)) for alias in ALIASES]
        except Exception as error:  # noqa: BLE001 - an unreachable registry is shown, not raised
            return [], f"the model registry cannot be read ({type(error).__name__})"
        views = []
        shown: dict[str, VersionView] = {}
        for alias, mv in found:
            if mv is None:
                continue
            if str(mv.version) in shown:
                # One version under both aliases (right after a promotion): shown once.
                shown[str(mv.version)].also = alias
                continue
            key = (alias, str(mv.version))
            if key not in self._cache:
                self._cache[key] = self._read(client, alias, mv)
            view = self._cache[key]
            view.also = None
            shown[str(mv.version)] = view
            views.append(view)
        if not views:
            return [], f"model {self.model_name!r} has no champion or challenger yet"
        return views, None

    def _read(self, client: Any, alias: str, mv: Any) -> VersionView:
        import datetime as dt

        created = dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=dt.UTC)
        view = VersionView(
            alias=alias,
            version=str(mv.version),
            run_id=str(mv.run_id),
            created=created.strftime("%Y-%m-%d %H:%M UTC"),
        )
        try:
            run = client.get_run(mv.run_id)
        except Exception as error:  # noqa: BLE001
            view.note = f"its training run cannot be read ({type(error).__name__})"
            return view
        view.metrics = _metric_rows(dict(run.data.metrics))
        view.capacity = _capacity(client, mv.run_id)
        view.report_name = _report_name(client, mv.run_id)
        return view

    def report_html(self, version: str) -> bytes | None:
        """The training report logged with a version's run, or None."""
        view = next((v for v in self._cache.values() if v.version == version), None)
        if view is None or view.report_name is None:
            return None
        client = self._client()
        with tempfile.TemporaryDirectory(prefix="abm-report-") as tmp:
            try:
                path = client.download_artifacts(view.run_id, f"report/{view.report_name}", tmp)
            except Exception:  # noqa: BLE001
                return None
            return Path(path).read_bytes()
