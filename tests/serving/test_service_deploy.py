"""Deployment and launch: MLflow version -> Bento model with its lineage, the service classes
on it, the ``bentoml serve`` command, and imports without side effects.

The deployment tests use a private MLflow store and BentoML home (tests/serving/conftest.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from abm_ml import config as cfg
from abm_ml.errors import AbmInputError
from abm_ml.service import deploy as deployment_
from abm_ml.service import handlers, launch
from abm_ml.service.contract import RecordSchema

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


# -- deployment and the service classes (real MLflow store, real BentoML store) ------------------


@pytest.mark.slow
def test_deploy_records_lineage(deployment, trained):
    import bentoml

    model = bentoml.models.get(deployment["tag"])
    labels, meta = model.info.labels, model.info.metadata
    assert (
        labels["mlflow_model"] == cfg.REGISTERED_MODEL_NAME
        and labels["mlflow_version"] == deployment["version"]
    )
    assert labels["alias"] == "champion" and labels["mlflow_run_id"]
    assert meta["trained_at"] == trained.scorer.metadata["trained_at"]
    assert meta["metrics"]["roc_auc"]["value"] == pytest.approx(
        trained.propensity["abm-ml"]["roc_auc"].value
    )
    assert [f["name"] for f in meta["features"]] == trained.scorer.feature_names
    assert list(Path(model.path).rglob("scorer.joblib"))

    info = deployment_.DeployedModel.from_bento(model)
    assert (info.version, info.alias, info.calibration) == (
        deployment["version"],
        "champion",
        trained.scorer.metadata["calibration"],
    )
    # Same version and alias: reused; force: a new import.
    assert str(deployment_.deploy("champion")) == deployment["tag"]
    forced = deployment_.deploy("champion", force=True)
    assert str(forced) != deployment["tag"]
    assert str(deployment_.deploy("champion")) in (deployment["tag"], str(forced))
    bentoml.models.delete(forced)
    with pytest.raises(AbmInputError, match="alias"):
        deployment_.deploy("no-such-alias")


@pytest.mark.slow
def test_deploy_configures_nothing(deployment, tmp_path):
    """deploy() reads the store the entry point configured, and says so when none was."""
    code = (
        "import sys\n"
        "from abm_ml.service.deploy import deploy\n"
        "try:\n"
        "    deploy('champion')\n"
        "except RuntimeError as exc:\n"
        "    print('refused:', exc)\n"
        "from abm_ml.registry.tracking import configure\n"
        "configure()\n"
        "print('deployed:', deploy('champion'))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(ABM_ML_MODELS_DIR=deployment["models_dir"], BENTOML_HOME=os.environ["BENTOML_HOME"])
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("refused:") and "configure()" in lines[0]
    assert lines[-1] == f"deployed: {deployment['tag']}"
    assert not list(tmp_path.iterdir())  # no MLflow store appeared in the working directory


@pytest.mark.slow
def test_service_classes_use_the_deployed_model(svc, deployment, trained, make_records):
    import bentoml

    # The model is declared at class scope, so a built Bento carries it; one service holds it.
    service = svc.AbmScoringService
    assert isinstance(service.inner.__dict__["bento_model"], bentoml.models.BentoModel)
    assert [str(m.tag) for m in service.models] == [deployment["tag"]]
    assert not service.dependencies  # no second process to cross a socket to

    instance = svc.AbmScoringService.inner()
    assert instance.__is_ready__()
    rows = RecordSchema(trained.scorer.features).validate_batch(make_records(4))
    served = handlers.score_rows(instance.scorer, rows)
    np.testing.assert_allclose(
        [r["propensity"] for r in served],
        [r["propensity"] for r in handlers.score_rows(trained.scorer, rows)],
        rtol=1e-12,
    )
    # One record takes the scorer's one-record path and gives the batch's row.
    assert handlers.score_rows(instance.scorer, rows[1:2]) == served[1:2]
    assert len(handlers.explain_rows(instance.scorer, rows)) == 4


# -- launching and importing -----------------------------------------------------------------


def test_serve_command_needs_no_checkout(tmp_path, monkeypatch):
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "home"))
    argv, env = launch.serve_command(
        "abm-account-scorer:abc", port=4321, workers=2, env={"ABM_ML_API_TOKEN": "t"}
    )
    assert argv[argv.index("serve") + 1] == launch.SERVICE_IMPORT
    assert "--working-dir" not in argv and argv[argv.index("--port") + 1] == "4321"
    assert (env["ABM_ML_BENTO_MODEL"], env["ABM_ML_WORKERS"], env["ABM_ML_API_TOKEN"]) == (
        "abm-account-scorer:abc",
        "2",
        "t",
    )
    # The service module is part of the installed package, not a file of the checkout.
    module = launch.SERVICE_IMPORT.split(":")[0]
    assert importlib.util.find_spec(module).origin.endswith("abm_ml/service/bento.py")


def test_importing_the_service_has_no_side_effects(tmp_path):
    """Importing the service package configures nothing, creates nothing, reads no store."""
    code = (
        "import json, sys\n"
        "import abm_ml.service, abm_ml.service.settings, abm_ml.service.contract\n"
        "import abm_ml.service.responses, abm_ml.service.handlers, abm_ml.service.auth\n"
        "import abm_ml.service.deploy, abm_ml.service.launch, abm_ml.testing\n"
        "print(json.dumps(sorted(m for m in ('mlflow', 'bentoml') if m in sys.modules)))\n"
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BENTOML_", "ABM_ML_"))
    }
    env.update(
        BENTOML_HOME=str(tmp_path / "bentoml"),
        ABM_ML_MODELS_DIR=str(tmp_path / "models"),
        ABM_ML_REPORTS_DIR=str(tmp_path / "reports"),
        ABM_ML_DATA_DIR=str(tmp_path / "data"),
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == []
