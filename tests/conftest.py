"""Shared fixtures: a small CRM export with planted signal, a trained model, a private MLflow store.

The export is made here with numpy (no dependency on the synthetic world), so these fixtures
test the pipeline on data whose truth is known: winning rises with web visits and an engaged
economic buyer, falls with a competitor in place; days to close rise with the amount.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SHARED_DATASETS = Path(
    os.environ.get(
        "ABM_ML_SHARED_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"
    )
)


def make_crm_export(n: int = 2400, seed: int = 3) -> pd.DataFrame:
    """A CRM opportunity export with dates, accounts, open deals and planted drivers."""
    rng = np.random.default_rng(seed)
    accounts = np.array([f"ACC{i:05d}" for i in rng.integers(0, n * 3, n)])
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(
        np.sort(rng.uniform(0, 700, n)), unit="D"
    )
    industry = rng.choice(["software", "fintech", "retail", "manufacturing", "healthcare"], n)
    visits = rng.poisson(4, n)
    buyer = rng.random(n) < 0.45
    competitor = rng.random(n) < 0.3
    employees = np.exp(rng.normal(6, 1.2, n)).round()
    noise = rng.normal(0, 1, n)
    logit = (
        -1.6
        + 0.35 * (visits - 4)
        + 1.3 * buyer
        - 1.0 * competitor
        + 0.5 * np.isin(industry, ["software", "fintech"])
    )
    won = rng.random(n) < 1 / (1 + np.exp(-logit))
    amount = np.exp(rng.normal(10, 0.8, n)).round(2)
    days = np.maximum(3, rng.gamma(4, 8, n) * (amount / 22000) ** 0.5).round()
    closed = created + pd.to_timedelta(days, unit="D")
    is_open = closed > pd.Timestamp("2025-12-31")
    outcome = np.where(is_open, "Open", np.where(won, "Closed Won", "Closed Lost"))
    return pd.DataFrame(
        {
            "Opportunity ID": [f"OPP{i:05d}" for i in range(n)],
            "Account": accounts,
            "Stage": outcome,
            "Created Date": created.strftime("%m/%d/%Y"),
            "Close Date": np.where(is_open, "", closed.strftime("%m/%d/%Y")),
            "Amount": [f"{a:,.2f}" for a in amount],
            "Industry": industry,
            "Employees": employees.astype(int),
            "Web Visits 30d": visits,
            "Economic Buyer Engaged": np.where(buyer, "Yes", "No"),
            "Competitor In Place": np.where(competitor, "yes", "no"),
            "Noise Score": noise.round(3),
        }
    )


CRM_SPEC = {
    "name": "tiny-crm",
    "description": "Test export with planted drivers.",
    "source": {"path": "opportunities.csv"},
    "row_id": "Opportunity ID",
    "account_id": "Account",
    "label": {"column": "Stage", "won": ["Closed Won"], "lost": ["Closed Lost"], "open": ["Open"]},
    "created_at": {"column": "Created Date", "formats": ["%m/%d/%Y"]},
    "closed_at": {"column": "Close Date", "formats": ["%m/%d/%Y"]},
    "amount": "Amount",
    "features": [
        {
            "column": "Industry",
            "name": "industry",
            "type": "categorical",
            "description": "industry",
            "template": "Industry: {value}",
        },
        {
            "column": "Employees",
            "name": "employees",
            "type": "numeric",
            "description": "employees",
            "template": "{value:,.0f} employees",
        },
        {
            "column": "Web Visits 30d",
            "name": "web_visits_30d",
            "type": "numeric",
            "description": "web visits in the last 30 days",
            "template": "{value:.0f} web visits in the last 30 days",
        },
        {
            "column": "Economic Buyer Engaged",
            "name": "has_economic_buyer",
            "type": "boolean",
            "description": "economic buyer engaged",
            "true_text": "Economic buyer engaged",
            "false_text": "No economic buyer in CRM",
        },
        {
            "column": "Competitor In Place",
            "name": "uses_competitor",
            "type": "boolean",
            "description": "competitor in place",
            "true_text": "Competitor's product in use",
            "false_text": "No competitor in place",
        },
        {
            "column": "Amount",
            "name": "deal_amount",
            "type": "numeric",
            "description": "deal amount",
            "template": "Deal size ${value:,.0f}",
        },
        {
            "column": "Noise Score",
            "name": "noise_score",
            "type": "numeric",
            "description": "noise score",
        },
    ],
    "icp": {"industry": ["software", "fintech"], "web_visits_30d": ">= 5"},
}
PLANTED = ("web_visits_30d", "has_economic_buyer", "uses_competitor")


@pytest.fixture(scope="session")
def crm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with opportunities.csv and spec.yaml."""
    import yaml

    folder = tmp_path_factory.mktemp("crm")
    make_crm_export().to_csv(folder / "opportunities.csv", index=False)
    (folder / "spec.yaml").write_text(yaml.safe_dump(CRM_SPEC, sort_keys=False))
    return folder


@pytest.fixture(scope="session")
def crm_dataset(crm_dir: Path):
    from abm_ml.data.spec import load_spec
    from abm_ml.data.validate import load_dataset

    return load_dataset(load_spec(crm_dir / "spec.yaml"))


@pytest.fixture(scope="session")
def trained(crm_dataset):
    """A real training result on the small export (LightGBM, calibration, velocity, baselines)."""
    from abm_ml.modeling.train import TrainConfig, train_models

    return train_models(
        crm_dataset,
        TrainConfig(n_boot=50, learning_rate=0.08, max_rounds=400, early_stopping_rounds=40),
    )


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
