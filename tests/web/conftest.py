"""A score history with two real ranking runs of a trained model, and the pages' ASGI client.

The runs are made by the real ranker (:func:`abm_ml.modeling.ranking.rank_accounts` with the
``trained`` fixture's scorer) and stored by :func:`abm_ml.reporting.history.record_run`; the
second run scores the same accounts after a change planted in a few of them, so the movement
the pages show is known.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

N_ACCOUNTS = 400
SEGMENTS = ("enterprise", "mid-market", "smb")
REGIONS = ("EMEA", "NA", "APAC")


def scoring_accounts(crm_dir: Path) -> pd.DataFrame:
    """Open accounts in the export's own format, with segment, region and owner columns."""
    frame = pd.read_csv(crm_dir / "opportunities.csv")
    # A list of accounts to work: no outcome column (a closed deal is not ranked).
    frame = frame.drop(columns=["Stage"]).drop_duplicates("Account").head(N_ACCOUNTS)
    frame = frame.reset_index(drop=True)
    rng = np.random.default_rng(3)
    frame["segment"] = rng.choice(SEGMENTS, len(frame))
    frame["region"] = rng.choice(REGIONS, len(frame))
    frame["owner"] = [f"rep-{i % 7}" for i in range(len(frame))]
    return frame


@pytest.fixture()
def open_accounts(crm_dir) -> pd.DataFrame:
    """The accounts the conftest runs rank, in the export's own format (a fresh copy)."""
    return scoring_accounts(crm_dir)


@pytest.fixture(scope="session")
def ranked_runs(trained, crm_dir, tmp_path_factory):
    """Two runs stored in a SQLite history: (url, first RankResult, second ranked frame)."""
    from abm_ml.modeling.ranking import rank_accounts
    from abm_ml.reporting.history import record_run
    from abm_ml.web.waterfall import with_model_inputs

    folder = tmp_path_factory.mktemp("history")
    url = f"sqlite:///{folder / 'history.db'}"
    accounts = scoring_accounts(crm_dir)
    scorer = trained.scorer
    first = rank_accounts(
        scorer, accounts, tiers=(5, 20, 100), as_of="2026-01-05", model_version="1"
    )
    record_run(first.ranked, url, run_at="2026-01-05T08:00:00")
    # A week later the bottom-ranked accounts gained a lot of the planted winning signal.
    later = accounts.copy()
    bottom = first.ranked.tail(15)["account_id"].astype(str)
    id_column = _id_column(later, bottom)
    boosted = later[id_column].astype(str).isin(bottom)
    for column, value in _winning_values(later).items():
        later.loc[boosted, column] = value
    second = rank_accounts(scorer, later, tiers=(5, 20, 100), as_of="2026-01-12", model_version="2")
    # The latest run keeps its model inputs (as `abm-ml rank` stores them); the first does not,
    # like a run ranked before the pages kept them.
    second_ranked = record_run(
        with_model_inputs(second.ranked, scorer, later), url, run_at="2026-01-12T08:00:00"
    )
    return {
        "url": url,
        "first": first.ranked,
        "second": second_ranked,
        "boosted": set(bottom),
        "scorer": scorer,
    }


def _id_column(frame: pd.DataFrame, ids: pd.Series) -> str:
    for column in frame.columns:
        if frame[column].astype(str).isin(ids).sum() == len(ids):
            return column
    raise AssertionError("no column holds the account ids")


def _winning_values(frame: pd.DataFrame) -> dict[str, object]:
    """Values of the planted signal (abm_ml.testing) that raise the propensity most."""
    return {
        "Web Visits 30d": int(frame["Web Visits 30d"].max()),
        "Economic Buyer Engaged": "Yes",
        "Competitor In Place": "no",
    }


@pytest.fixture()
def pages(ranked_runs):
    """A test client of the pages, open (no token)."""
    from starlette.testclient import TestClient

    from abm_ml.web import create_app

    with TestClient(create_app(history_url=ranked_runs["url"], token="")) as client:
        yield client


@pytest.fixture(scope="module")
def deployed(trained, tmp_path_factory):
    """The ``trained`` model logged to a private MLflow store, champion, in a private BentoML home.

    The same folder as tests/serving's deployment: a session running both reuses the work.
    """
    from abm_ml.service.deploy import use_bentoml_home
    from abm_ml.service.settings import ENV_API_TOKEN, ENV_BENTO_MODEL
    from abm_ml.testing import bootstrap_deployment

    root = tmp_path_factory.getbasetemp() / "abm-serving-deployment"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ABM_ML_MODELS_DIR", str(root / "models"))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        mp.setenv("ABM_ML_REPORTS_DIR", str(root / "reports"))
        mp.setenv("BENTOML_DO_NOT_TRACK", "True")
        mp.delenv(ENV_API_TOKEN, raising=False)
        with use_bentoml_home(root / "bentoml"):
            info = bootstrap_deployment(trained, root)
            mp.setenv(ENV_BENTO_MODEL, info["tag"])
            yield {**info, "root": root}
