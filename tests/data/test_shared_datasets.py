"""Every shipped spec loads its real dataset with the expected rejects and no leaking feature.

Needs ../shared/datasets (skipped with the reason when absent; CI has it). Each dataset is
loaded once per module.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from abm_ml.data.leakage import check_leakage, refused
from abm_ml.data.spec import load_spec
from abm_ml.data.validate import Dataset, load_dataset
from abm_ml.schema import LOST, OPEN, WON
from conftest import SHARED_DATASETS, shared_dataset

pytestmark = pytest.mark.shared

SPECS = Path(__file__).resolve().parents[2] / "training" / "specs"
SPEC_NAMES = sorted(p.stem for p in SPECS.glob("*.yaml"))
KNOWN = (
    "ibm-sales-win-loss",
    "uci-bank-marketing",
    "olist-marketing-funnel",
    "maven-crm-sales-opportunities",
)


def _source_paths(name: str) -> list[Path]:
    spec = load_spec(SPECS / f"{name}.yaml")
    parts = [spec.source, *spec.source.join]
    return [Path(p.path) for p in parts if p.path]


@cache
def _load(name: str) -> Dataset:
    return load_dataset(load_spec(SPECS / f"{name}.yaml"))


def _dataset(name: str) -> Dataset:
    """The loaded dataset, or skip: shared folder absent, or a spec whose data is not there yet."""
    if name in KNOWN:
        shared_dataset(name)
    missing = [p for p in _source_paths(name) if not p.is_file()]
    if missing:
        pytest.skip(f"data of spec {name!r} not found: {missing[0]}")
    return _load(name)


def _sha256sums() -> dict[str, str]:
    sums = SHARED_DATASETS / "SHA256SUMS"
    if not sums.is_file():
        pytest.skip(f"shared datasets not found at {SHARED_DATASETS} (set ABM_ML_SHARED_DATASETS)")
    pairs = (line.split(maxsplit=1) for line in sums.read_text().splitlines() if line.strip())
    return {path.strip().lstrip("*"): digest for digest, path in pairs}


def test_known_specs_are_shipped():
    assert set(KNOWN) <= set(SPEC_NAMES)


@pytest.mark.parametrize(
    "relative",
    [
        "ibm-sales-win-loss/WA_Fn-UseC_-Sales-Win-Loss.csv",
        "maven-crm-sales-opportunities/accounts.csv",
        "maven-crm-sales-opportunities/products.csv",
        "maven-crm-sales-opportunities/sales_pipeline.csv",
        "maven-crm-sales-opportunities/sales_teams.csv",
        "olist-marketing-funnel/olist_closed_deals_dataset.csv",
        "olist-marketing-funnel/olist_marketing_qualified_leads_dataset.csv",
        "uci-bank-marketing/bank-additional-full.csv",
    ],
)
def test_files_match_sha256sums(relative):
    sums = _sha256sums()
    assert relative in sums
    digest = hashlib.sha256((SHARED_DATASETS / relative).read_bytes()).hexdigest()
    assert digest == sums[relative], relative


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_spec_loads_and_accounts_for_every_row(name):
    dataset = _dataset(name)
    summary = dataset.summary
    assert summary.accepted == len(dataset.frame) > 0
    assert summary.rejected == len(dataset.rejects)
    assert summary.outcomes[WON] > 0 and summary.outcomes[LOST] > 0
    assert dataset.features and set(dataset.feature_names) <= set(dataset.frame.columns)
    main = summary.sources[0]
    from_main = dataset.rejects["file"].str.startswith(main["name"]).sum()
    assert main["rows"] == summary.accepted + from_main
    if len(summary.sources) == 1:
        assert summary.rows_read == summary.accepted + summary.rejected


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_sources_read_are_the_published_bytes(name):
    dataset = _dataset(name)
    sums = _sha256sums()
    shared = SHARED_DATASETS.resolve()
    for source in dataset.summary.sources:
        path = Path(source["name"]).resolve()
        if path.is_relative_to(shared):  # a spec may read data of its own (synthetic)
            relative = path.relative_to(shared).as_posix()
            assert sums.get(relative) == source["sha256"], relative


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_no_leaking_feature_in_a_shipped_spec(name):
    dataset = _dataset(name)
    findings = check_leakage(dataset.frame, dataset.features, dataset.spec)
    assert refused(findings) == set(), [f.message() for f in findings]
    excluded = set(dataset.summary.excluded)
    assert excluded.isdisjoint(f.column for f in dataset.features)


def test_ibm_rejects_duplicates():
    dataset = _dataset("ibm-sales-win-loss")
    summary = dataset.summary
    assert summary.rows_read == 78025
    assert summary.rejected_by_reason == {
        "exact duplicate": 55,
        "duplicate 'Opportunity Number'": 141,
    }
    assert summary.accepted == 78025 - 196
    assert summary.outcomes[OPEN] == 0
    # Rejected lines point at the right rows of the CRLF file.
    lines = (
        (SHARED_DATASETS / "ibm-sales-win-loss" / "WA_Fn-UseC_-Sales-Win-Loss.csv")
        .read_bytes()
        .split(b"\r\n")
    )
    for row in dataset.rejects.head(20).to_dict("records"):
        assert lines[row["line"] - 1].startswith(f"{row['Opportunity Number']},".encode())
    assert "Total Days Identified Through Closing" not in {f.column for f in dataset.features}
    assert dataset.frame["days_to_close"].notna().all()


def test_olist_rejects_the_deal_won_before_first_contact():
    dataset = _dataset("olist-marketing-funnel")
    summary = dataset.summary
    assert summary.rejected_by_reason == {
        "closed before created ('won_date' < 'first_contact_date')": 1
    }
    reject = dataset.rejects.iloc[0]
    assert reject["won_date"] < reject["first_contact_date"]
    assert summary.accepted == 7999
    assert summary.outcomes == {WON: 841, LOST: 7158, OPEN: 0}
    assert any("842 of its 842 rows used" in note for note in summary.notes)


def test_bank_keeps_identical_rows_and_reads_unknown_as_missing():
    # No client id: 12 rows identical to an earlier one are distinct calls, counted and kept.
    dataset = _dataset("uci-bank-marketing")
    assert dataset.summary.rejected == 0
    assert dataset.summary.identical_rows == 12
    assert dataset.summary.accepted == 41188
    assert "duration" not in {f.column for f in dataset.features}
    assert dataset.frame["has_credit_in_default"].isna().sum() > 8000  # 'unknown' in the file
    assert "unknown" not in set(dataset.frame["education"].dropna())


def test_maven_joins_with_loose_product_names():
    dataset = _dataset("maven-crm-sales-opportunities")
    rejects = dataset.rejects
    assert dataset.summary.rejected == 5
    assert set(rejects["file"].map(lambda f: Path(f).name)) == {"sales_teams.csv"}
    assert set(rejects["reason"]) == {
        "no matching row in the main source for join key 'sales_agent'"
    }
    frame = dataset.frame
    gtx_pro = frame[frame["product"] == "GTXPro"]
    assert len(gtx_pro) == 1480
    assert (gtx_pro["list_price"] == 4821).all() and (gtx_pro["product_series"] == "GTX").all()
    assert frame["list_price"].notna().all()
    assert dataset.summary.outcomes == {WON: 4238, LOST: 2473, OPEN: 2089}
    # Open deals without an account are kept, each as its own account.
    assert np.sum(frame["account_id"].str.startswith("row:")) == 1425
