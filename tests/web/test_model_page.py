"""The model page reads the registry: the champion's metrics with intervals and its capacity table."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from starlette.testclient import TestClient

from abm_ml.web import create_app

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def test_model_page_shows_the_champion(deployed, ranked_runs, trained):
    from abm_ml.registry.store import client

    run = client().get_run(
        client().get_model_version_by_alias("abm-account-scorer", "champion").run_id
    )
    auc = run.data.metrics["abm_ml_roc_auc"]
    with TestClient(create_app(history_url=ranked_runs["url"], token="")) as pages:
        r = pages.get("/model")
    assert r.status_code == 200
    assert re.search(rf"Champion( and challenger)?: version {deployed['version']}<", r.text)
    # One version under both aliases is one section, not two copies.
    assert r.text.count('class="version"') == 1
    assert f"{auc:,.3f}" in r.text
    low, high = run.data.metrics["abm_ml_roc_auc_low"], run.data.metrics["abm_ml_roc_auc_high"]
    assert f"{low:,.3f} – {high:,.3f}" in r.text
    # The capacity table of the training report, from the run's logged holdout predictions.
    capacity = r.text.split('class="capacity"')[1].split("</table>")[0]
    shares = re.findall(r"([\d.]+) %</td>", capacity)
    assert len(shares) >= 4
    assert "top 10" in capacity or "top 50" in capacity


def test_model_page_without_a_registry_says_so(ranked_runs, tmp_path, monkeypatch):
    monkeypatch.setenv("ABM_ML_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with TestClient(create_app(history_url=ranked_runs["url"], token="")) as pages:
        r = pages.get("/model")
    assert r.status_code == 200
    assert "no champion or challenger yet" in r.text or "cannot be read" in r.text


def test_training_report_link_serves_the_logged_report(deployed, ranked_runs, tmp_path):
    from abm_ml.registry.store import client

    mlflow_client = client()
    version = mlflow_client.get_model_version_by_alias("abm-account-scorer", "champion")
    report = tmp_path / "tiny-crm-v1.html"
    report.write_text(
        "<html><title>Training report: tiny-crm</title><body>report body</body></html>"
    )
    mlflow_client.log_artifact(version.run_id, str(report), artifact_path="report")
    with TestClient(create_app(history_url=ranked_runs["url"], token="")) as pages:
        page = pages.get("/model").text
        assert f'href="/model/report/{version.version}"' in page
        served = pages.get(f"/model/report/{version.version}")
        assert served.status_code == 200 and "report body" in served.text
        assert pages.get("/model/report/999").status_code == 404


def test_model_page_shows_the_latest_drift_verdict(deployed, ranked_runs, trained, open_accounts):
    """Two real monitoring runs of the champion; the page shows the newer one's verdict."""
    from abm_ml.monitoring.monitor import monitor_accounts, write_outputs
    from abm_ml.monitoring.profile import ProfileStore
    from abm_ml.web.drift import monitoring_folder

    version = deployed["version"]
    folder = monitoring_folder()
    assert str(folder).startswith(str(deployed["root"]))  # the deployment's private reports
    with TestClient(create_app(history_url=ranked_runs["url"], token="")) as pages:
        before = pages.get("/model").text
    assert "No drift status yet" in before
    store = ProfileStore(folder / "profiles", "abm-account-scorer", version)
    accounts = open_accounts
    first = monitor_accounts(
        trained.scorer, accounts, as_of="2026-01-05", store=store, model_version=version
    )
    write_outputs(first, folder, stem=f"monitor-v{version}-2026-01-05")
    shifted = accounts.copy()
    shifted["Web Visits 30d"] = pd.to_numeric(shifted["Web Visits 30d"]) * 25 + 200
    second = monitor_accounts(
        trained.scorer, shifted, as_of="2026-01-12", store=store, model_version=version
    )
    assert second.drifted
    write_outputs(second, folder, stem=f"monitor-v{version}-2026-01-12")
    with TestClient(create_app(history_url=ranked_runs["url"], token="")) as pages:
        page = pages.get("/model").text
    drift = page.split('class="drift"')[1].split("</div>")[0]
    assert '<span class="verdict drift">drift</span>' in drift
    assert "as of 2026-01-12" in drift
    assert "scoring run of 2026-01-05" in drift
    flagged = re.findall(r"<td><code>([^<]+)</code></td>", drift)
    assert flagged and set(flagged) <= set(second.flagged)
