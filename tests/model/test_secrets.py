"""No secret at rest: a password expanded from ``${VAR}`` in a spec never reaches the MLflow store.

The spec reads its join from PostgreSQL with ``${DB_PASSWORD}``; the run's params, tags,
artifacts, the registry's rows and the HTML report are all searched for the password, byte
for byte, in every file the store and the reports folder hold.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from abm_ml.cli.models import write_training_report
from abm_ml.data.spec import load_spec
from abm_ml.redact import mask_credentials
from abm_ml.registry import tracking

pytestmark = pytest.mark.slow

PASSWORD = "Tr0ub4dor-s3cret-pw"
URL = "postgresql+psycopg://ann:${DB_PASSWORD}@db.internal:5432/crm"


def _files_holding(folder: Path, needle: bytes) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_spec_password_is_in_no_param_tag_artifact_or_report(
    trained, mlflow_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("DB_PASSWORD", PASSWORD)
    written = trained.dataset.spec.as_written or yaml.safe_dump(
        trained.dataset.spec.model_dump(mode="json", exclude_none=True)
    )
    data = yaml.safe_load(written)
    data["source"]["join"] = [{"url": URL, "table": "owners", "on": "account_id"}]
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    spec = load_spec(tmp_path / "spec.yaml")
    assert PASSWORD in spec.source.join[0].url  # the spec really resolved the secret
    # What the reader reports about such a source (its name and the join's note).
    shown = mask_credentials(spec.source.join[0].url)
    summary = dataclasses.replace(
        trained.dataset.summary,
        sources=[*trained.dataset.summary.sources, {"name": shown, "sha256": "0", "rows": 1}],
        notes=[*trained.dataset.summary.notes, f"join with {shown}: 1 of 1 rows matched"],
    )
    dataset = dataclasses.replace(trained.dataset, spec=spec, summary=summary)
    result = dataclasses.replace(trained, dataset=dataset)

    tracking.configure()
    info = tracking.log_training(result)
    report = write_training_report(result, info)

    client = MlflowClient()
    run = client.get_run(info["run_id"])
    logged = client.download_artifacts(info["run_id"], "data/spec.yaml", str(tmp_path / "dl"))
    assert "${DB_PASSWORD}" in Path(logged).read_text()  # the spec as written
    texts = [str(run.data.params), str(run.data.tags)]
    mv = client.get_model_version(info["model_name"], info["version"])
    texts.append(str(mv.tags))
    assert not [t for t in texts if PASSWORD in t]
    needle = PASSWORD.encode()
    assert _files_holding(mlflow_store, needle) == []
    assert _files_holding(report.parent, needle) == []
    assert needle not in report.read_bytes()


def test_credentials_are_masked_in_any_text():
    text = "cannot read postgresql://ann:pw@db/crm nor http://bob:x%40y@mlflow:5000/"
    assert mask_credentials(text) == (
        "cannot read postgresql://ann:***@db/crm nor http://bob:***@mlflow:5000/"
    )
    assert mask_credentials("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
