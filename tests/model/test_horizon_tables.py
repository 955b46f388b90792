"""Propensity to buy from a CRM export's tables: the synthetic world exported as Salesforce objects.

The snapshots built from the Salesforce tables (through the spec, the preset and the
point-in-time builder) must be those built from the world itself: same accounts, dates, labels
and feature values. Two differences are by construction and are mapped here, not hidden: the
export prefixes account ids with Salesforce's ``001`` key prefix, and writes the float32 data
quality score with three decimals (equal at float32 precision).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from abm_ml.config import specs_dir
from abm_ml.data.spec import load_spec
from abm_ml.data.tables import load_tables
from abm_ml.modeling import horizon as hz
from abm_ml.schema import ACCOUNT_ID, OUTCOME, ROW_ID
from abm_ml.synthetic.export import export_world
from abm_ml.synthetic.generate import generate_world

HORIZON = 180


def salesforce_spec(world, folder: Path) -> Path:
    """The world as a Salesforce export in ``folder`` and the repository's spec pointed at it."""
    export_world(world, folder / "salesforce", "salesforce")
    spec = yaml.safe_load((specs_dir() / "synthetic-salesforce.yaml").read_text())
    spec["tables"]["dir"] = str(folder / "salesforce")
    spec["tables"]["out"] = str(folder / "rows")
    path = folder / "synthetic-salesforce.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def world():
    return generate_world(n_accounts=600, seed=23)


@pytest.fixture(scope="module")
def spec_path(world, tmp_path_factory):
    return salesforce_spec(world, tmp_path_factory.mktemp("sf"))


@pytest.fixture(scope="module")
def tables(spec_path):
    return load_tables(load_spec(spec_path).tables)


def _snapshots(source, dates, known_until):
    rows_as_of, opportunities = hz.world_source(source)
    return hz.build_snapshots(
        rows_as_of, opportunities, dates, horizon_days=HORIZON, known_until=known_until
    )


def test_snapshots_from_the_salesforce_tables_are_the_worlds(world, tables):
    assert len(tables.rejects) == 0
    dates = hz.snapshot_dates(world.start, world.as_of, HORIZON)
    from_world, world_summary = _snapshots(world, dates, world.as_of)
    from_crm, crm_summary = _snapshots(tables, dates, world.as_of)
    assert world_summary == crm_summary
    assert world_summary.won > 20 and world_summary.open_deal_excluded > 0
    expected = from_world.copy()
    expected[ACCOUNT_ID] = "001" + expected[ACCOUNT_ID]
    expected[ROW_ID] = "001" + expected[ROW_ID]
    assert list(from_crm.columns) == list(expected.columns)
    quality = "crm_data_quality"
    np.testing.assert_array_equal(
        from_crm[quality].to_numpy(np.float32), expected[quality].to_numpy(np.float32)
    )
    rest = [c for c in expected.columns if c != quality]
    pd.testing.assert_frame_equal(
        from_crm[rest], expected[rest], check_dtype=False, check_categorical=False
    )


def test_history_span_of_the_export(world, tables):
    """The export starts where the world's touches do; it ends a second before the world's end
    (the last close date, date-only, is read as known at the end of its day), which leaves out
    the last month whose 180-day window would end at the world's end exactly."""
    first, known_until = hz.history_span(tables)
    assert first >= world.start and first < world.start + pd.Timedelta(days=1)
    assert known_until <= world.as_of and known_until > world.as_of - pd.Timedelta(days=2)
    from_world = hz.snapshot_dates(world.start, world.as_of, HORIZON)
    from_crm = hz.snapshot_dates(first, known_until, HORIZON)
    assert from_crm[0] == from_world[0]
    assert set(from_crm) <= set(from_world) and len(from_world) - len(from_crm) <= 1


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "abm_ml.cli", *args], capture_output=True, text=True, check=False
    )


def test_train_buy_refuses_world_and_spec_together(spec_path, tmp_path):
    run = _cli("train-buy", "--spec", str(spec_path), "--world", str(tmp_path))
    assert run.returncode == 2 and "not both" in run.stderr and "Traceback" not in run.stderr


def test_a_spec_without_tables_is_refused_by_name():
    spec = specs_dir() / "synthetic-abm.yaml"
    run = _cli("rank-buy", "--spec", str(spec))
    assert run.returncode == 2 and "tables:" in run.stderr and str(spec) in run.stderr


@pytest.mark.slow
def test_train_buy_and_rank_buy_from_the_salesforce_spec(
    world, spec_path, tables, mlflow_store, tmp_path
):
    from abm_ml.cli.horizon import train_buy_model
    from abm_ml.data.validate import load_dataset
    from abm_ml.features.build import build_rows, write_rows
    from abm_ml.modeling.train import train_models
    from abm_ml.registry import tracking
    from abm_ml.testing import small_train_config

    spec = load_spec(spec_path)
    write_rows(build_rows(spec), spec.tables.out)
    tracking.configure()
    tracking.log_training(train_models(load_dataset(spec), small_train_config()))
    result, info = train_buy_model(
        spec=spec_path,
        known_until=str(world.as_of.date()),
        n_boot=30,
        force=True,
        out=tmp_path / "horizon",
    )
    assert info["version"] and result.scorer.metadata["propensity_kind"] == "buy"
    # The snapshots are the CRM's accounts, every month the world's own span gives.
    trained = pd.read_parquet(tmp_path / "horizon" / "snapshots.parquet")
    assert trained[ACCOUNT_ID].str.startswith("001").all()
    assert trained["snapshot_at"].nunique() == len(
        hz.snapshot_dates(world.start, world.as_of, HORIZON)
    )
    assert set(trained[OUTCOME]) <= {"won", "lost", "open"}

    out = tmp_path / "ranked.csv"
    run = _cli(
        "rank-buy",
        "--spec",
        str(spec_path),
        "--buy-model",
        "challenger",
        "--win-model",
        "challenger",
        "--out",
        str(out),
        "--no-report",
    )
    assert run.returncode == 0, run.stderr
    ranked = pd.read_csv(out, dtype={ACCOUNT_ID: str})
    assert len(ranked) == len(world.accounts)
    assert set(ranked[ACCOUNT_ID]) == set("001" + world.accounts[ACCOUNT_ID].astype(str))
    # Win propensity exactly for the accounts with a deal open at the latest event.
    open_deals = hz.accounts_with_open_deal(tables.opportunities, tables.latest_event())
    assert 0 < len(open_deals) < len(ranked)
    assert set(ranked.loc[ranked["propensity_used"] == "win", ACCOUNT_ID]) == open_deals
    assert ranked["buy_propensity"].between(0, 1).all()
    assert ranked["rank"].tolist() == list(range(1, len(ranked) + 1))
