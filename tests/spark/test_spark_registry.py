"""The registered model on Spark: ``mlflow.pyfunc.spark_udf`` and ``abm-ml rank --engine spark``.

Categories reach ``spark_udf`` as strings (the MLflow pitfall with LightGBM categoricals): the
packaged model must map them to its fitted category codes itself, and score as the local path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from abm_ml.cli import app
from abm_ml.errors import AbmInputError
from abm_ml.modeling.ranking import load_accounts, rank_accounts
from abm_ml.registry import promotion, tracking
from abm_ml.registry.pyfunc import input_example, to_json_columns
from abm_ml.testing import make_crm_export

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def champion(trained, tmp_path_factory: pytest.TempPathFactory):
    """A registered champion in a private store (logging a model takes seconds: once)."""
    folder = tmp_path_factory.mktemp("spark-store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ABM_ML_MODELS_DIR", str(folder / "models"))
        patch.setenv("ABM_ML_REPORTS_DIR", str(folder / "reports"))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        tracking.configure()
        tracking.log_training(trained)
        promotion.promote()
        yield trained


def test_spark_udf_maps_string_categories_like_the_local_scorer(spark, champion):
    import mlflow.pyfunc
    from pyspark.sql import functions as F

    records = input_example(champion.scorer, champion.holdout, n=150)
    assert records["industry"].map(type).eq(str).all(), "categories go in as text"
    # An unseen category and a missing one must score like the local path too.
    records.loc[0, "industry"] = "never-seen-industry"
    records.loc[1, "industry"] = None
    udf = mlflow.pyfunc.spark_udf(spark, "models:/abm-account-scorer@champion", env_manager="local")
    # One partition: one Python worker loads the model (the test's cost is mostly that load).
    frame = spark.createDataFrame(records).coalesce(1)
    scored = frame.select(udf(F.struct(*records.columns)).alias("out")).select("out.*").toPandas()
    expected = to_json_columns(champion.scorer.score(records))
    assert list(scored.columns) == list(expected.columns)
    np.testing.assert_allclose(scored["propensity"], expected["propensity"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        scored["days_to_close_p50"], expected["days_to_close_p50"], rtol=0, atol=1e-9
    )
    assert scored["reasons"].tolist() == expected["reasons"].tolist()
    assert scored["tier"].tolist() == expected["tier"].tolist()
    # Had the codes been taken from the strings' order, the industries would swap effects.
    assert scored["propensity"].nunique() > 20


def test_rank_engine_spark_writes_the_local_ranking(spark, champion, tmp_path: Path):
    export = make_crm_export(n=300, seed=33).drop(columns=["Stage", "Close Date"])
    export.loc[3, "Amount"] = "n/a?"
    csv = tmp_path / "accounts.csv"
    export.to_csv(csv, index=False)
    out = tmp_path / "spark-out"
    result = CliRunner().invoke(
        app,
        [
            "rank",
            str(csv),
            "--engine",
            "spark",
            "--out",
            str(out),
            "--as-of",
            "2026-04-01",
            "--tiers",
            "5,10,20",
            "--show",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Ranked" in result.output and "could not be scored" in result.output
    assert "Score history" in result.output
    ranked = pd.read_parquet(out / "ranked" / "as_of=2026-04-01").sort_values("rank")
    unscorable = pd.read_parquet(out / "unscorable" / "as_of=2026-04-01")

    local = rank_accounts(
        champion.scorer,
        load_accounts(csv, scorer=champion.scorer),
        tiers=(5, 10, 20),
        as_of="2026-04-01",
    )
    assert ranked["account_id"].tolist() == local.ranked["account_id"].tolist()
    assert ranked["abm_tier"].tolist() == local.ranked["abm_tier"].tolist()
    np.testing.assert_allclose(ranked["priority"], local.ranked["priority"], rtol=0, atol=1e-9)
    assert ranked["top_reasons"].tolist() == local.ranked["top_reasons"].tolist()
    assert ranked["model_version"].eq("1").all()
    assert unscorable["reason"].tolist() == local.unscorable["reason"].tolist()
    assert "'Amount'" in unscorable["reason"].iloc[0] or "Amount" in " ".join(unscorable["reason"])

    # A rerun of the same day replaces that day's rows instead of adding to them.
    again = CliRunner().invoke(
        app, ["rank", str(csv), "--engine", "spark", "--out", str(out), "--as-of", "2026-04-01"]
    )
    assert again.exit_code == 0, again.output
    assert len(pd.read_parquet(out / "ranked")) == len(ranked)


def test_rank_engine_refuses_an_unknown_engine(champion, tmp_path: Path):
    csv = tmp_path / "a.csv"
    make_crm_export(n=20).to_csv(csv, index=False)
    result = CliRunner().invoke(app, ["rank", str(csv), "--engine", "dask"])
    assert isinstance(result.exception, AbmInputError)
    assert "local or spark" in str(result.exception)
    table = CliRunner().invoke(app, ["rank", "x", "--engine", "spark", "--table", "accounts"])
    assert "table:db.accounts" in str(table.exception)
