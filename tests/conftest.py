"""Shared fixtures: a small CRM export with planted signal, a trained model, a private MLflow store.

The export comes from :mod:`abm_ml.testing` (numpy only, no dependency on the synthetic world,
shared with the benchmarks), so these fixtures test the pipeline on data whose truth is known:
winning rises with web visits and an engaged economic buyer, falls with a competitor in place;
days to close rise with the amount.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from abm_ml.testing import CRM_SPEC, PLANTED, make_crm_export, small_train_config, write_crm_export

__all__ = ["CRM_SPEC", "PLANTED", "SHARED_DATASETS", "make_crm_export", "shared_dataset"]

SHARED_DATASETS = Path(
    os.environ.get(
        "ABM_ML_SHARED_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"
    )
)


@pytest.fixture(scope="session")
def crm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with opportunities.csv and spec.yaml."""
    folder = tmp_path_factory.mktemp("crm")
    write_crm_export(folder)
    return folder


@pytest.fixture(scope="session")
def crm_dataset(crm_dir: Path):
    from abm_ml.data.spec import load_spec
    from abm_ml.data.validate import load_dataset

    return load_dataset(load_spec(crm_dir / "spec.yaml"))


@pytest.fixture(scope="session")
def trained(crm_dataset):
    """A real training result on the small export (LightGBM, calibration, velocity, baselines)."""
    from abm_ml.modeling.train import train_models

    return train_models(crm_dataset, small_train_config())


@pytest.fixture()
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private SQLite MLflow store and models folder for one test."""
    models = tmp_path / "models"
    monkeypatch.setenv("ABM_ML_MODELS_DIR", str(models))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setenv("ABM_ML_REPORTS_DIR", str(tmp_path / "reports"))
    return models


def shared_dataset(name: str) -> Path:
    """Path of a shared dataset folder, or skip the test with the reason."""
    folder = SHARED_DATASETS / name
    if not folder.is_dir():
        pytest.skip(f"shared dataset {name!r} not found at {folder} (set ABM_ML_SHARED_DATASETS)")
    return folder
