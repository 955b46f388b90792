"""The deployment every serving test uses: the ``trained`` model logged to a private MLflow
store, made champion and imported into a private BentoML home (a temp dir, never ~/bentoml).

Module-scoped: each test module enters it (the environment is restored after the module), and
all of them reuse the first module's MLflow run and Bento model.
"""

from __future__ import annotations

import importlib

import pytest

from abm_ml.service.deploy import use_bentoml_home
from abm_ml.service.settings import (
    ENV_API_TOKEN,
    ENV_BENTO_MODEL,
    ENV_IGNORE_UNKNOWN,
    ENV_MAX_BODY_BYTES,
    ENV_MAX_RECORDS,
)
from abm_ml.testing import bootstrap_deployment, json_records


@pytest.fixture(scope="module")
def deployment(trained, tmp_path_factory):
    """``{"tag", "version", "models_dir", "root"}``; ``ABM_ML_BENTO_MODEL`` names the Bento model."""
    root = tmp_path_factory.getbasetemp() / "abm-serving-deployment"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ABM_ML_MODELS_DIR", str(root / "models"))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        mp.setenv("ABM_ML_REPORTS_DIR", str(root / "reports"))
        mp.setenv("BENTOML_DO_NOT_TRACK", "True")
        for name in (ENV_API_TOKEN, ENV_MAX_RECORDS, ENV_MAX_BODY_BYTES, ENV_IGNORE_UNKNOWN):
            mp.delenv(name, raising=False)
        with use_bentoml_home(root / "bentoml"):
            info = bootstrap_deployment(trained, root)
            mp.setenv(ENV_BENTO_MODEL, info["tag"])
            yield {**info, "root": root}


@pytest.fixture(scope="module")
def svc(deployment):
    """The BentoML service module, imported in this process (it loads the deployed model)."""
    return importlib.import_module("abm_ml.service.bento")


@pytest.fixture(scope="module")
def make_records(trained):
    """``make_records(n, start=0)``: holdout rows as a CRM integration sends them."""

    def make(n: int | None = None, *, start: int = 0) -> list[dict]:
        return json_records(trained.holdout, trained.scorer.features, n, start=start)

    return make


@pytest.fixture(scope="module")
def scorer(trained):
    """The ``AccountScorer`` of the ``trained`` fixture."""
    return trained.scorer


@pytest.fixture(scope="module")
def schema(scorer):
    """The input contract of that scorer."""
    from abm_ml.service.contract import RecordSchema

    return RecordSchema(scorer.features)
