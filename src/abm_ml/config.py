"""Paths and URIs with local defaults, overridable from the environment.

Reading these creates nothing and configures nothing: entry points (the CLI, the service,
the tests) decide when to make folders or set MLflow's tracking URI.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The checkout's root when installed in editable mode (the usual case); the CWD otherwise."""

REGISTERED_MODEL_NAME = "abm-account-scorer"
BUY_MODEL_NAME = "abm-buy-propensity"
"""Registered name of the propensity-to-buy-within-a-horizon model (see docs/horizon.md)."""
HORIZON_DAYS = 180
CHAMPION, CHALLENGER = "champion", "challenger"


def _root() -> Path:
    return PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").is_file() else Path.cwd()


def models_dir() -> Path:
    """Home of the local MLflow store and artifacts (``ABM_ML_MODELS_DIR``, default ``models/``)."""
    return Path(os.environ.get("ABM_ML_MODELS_DIR", _root() / "models"))


def data_dir() -> Path:
    """Where ``abm-ml synth`` writes the synthetic world by default (``ABM_ML_DATA_DIR``, default ``data/``)."""
    return Path(os.environ.get("ABM_ML_DATA_DIR", _root() / "data"))


def reports_dir() -> Path:
    """Where rankings, rejects and HTML reports go (``ABM_ML_REPORTS_DIR``, default ``reports/``)."""
    return Path(os.environ.get("ABM_ML_REPORTS_DIR", _root() / "reports"))


def specs_dir() -> Path:
    return _root() / "training" / "specs"


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` when set, else a SQLite store under :func:`models_dir`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{models_dir() / 'mlflow.db'}"


def registry_uri() -> str:
    return os.environ.get("MLFLOW_REGISTRY_URI") or tracking_uri()


def artifact_root() -> str:
    """Artifact location for experiments created on the default local store."""
    return (models_dir() / "artifacts").resolve().as_uri()


def registered_model_name() -> str:
    return os.environ.get("ABM_ML_MODEL_NAME", REGISTERED_MODEL_NAME)


def buy_model_name() -> str:
    """Registered name of the propensity-to-buy model (``ABM_ML_BUY_MODEL_NAME``)."""
    return os.environ.get("ABM_ML_BUY_MODEL_NAME", BUY_MODEL_NAME)


def horizon_days() -> int:
    """Default horizon of the propensity to buy, in days (``ABM_ML_HORIZON_DAYS``, default 180)."""
    try:
        return max(1, int(os.environ.get("ABM_ML_HORIZON_DAYS", str(HORIZON_DAYS))))
    except ValueError:
        return HORIZON_DAYS


def history_url() -> str:
    """SQLAlchemy URL of the score-history table (``ABM_ML_HISTORY_URL``; SQLite under reports/ by default)."""
    return os.environ.get("ABM_ML_HISTORY_URL") or f"sqlite:///{reports_dir() / 'score_history.db'}"


def num_threads() -> int:
    """LightGBM threads for training and scoring (``ABM_ML_NUM_THREADS``, default 1).

    One thread is the default on purpose: on a 2-core machine that is doing anything else
    (a service worker, a test server, a second job), OpenMP's busy-waiting threads made IBM
    training 10-20x slower in wall time, while one thread finished 500 rounds in 3 s.
    """
    try:
        return max(0, int(os.environ.get("ABM_ML_NUM_THREADS", "1")))
    except ValueError:
        return 1
