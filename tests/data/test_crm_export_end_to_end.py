"""A small hand-made Salesforce-shaped export, with the oddities real ones have, trains and ranks.

The export is drawn here (not by the synthetic generator): titles only (no role field), contacts
without a title or with one no rule knows, Leads in WhoId, Call tasks (no ABM channel), date-only
CloseDate and FirstRespondedDate, forecast close dates on open deals, orphans, bad timestamps,
amounts with currency signs, a formula-looking account name. Winning is planted on meetings
before the deal and on an economic buyer being known, so a model that trained on the wrong rows
would not find them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from abm_ml.data.spec import load_spec
from abm_ml.data.validate import load_dataset
from abm_ml.features.build import build_rows, write_rows
from abm_ml.modeling.ranking import load_accounts, rank_accounts
from abm_ml.modeling.train import MODEL_NAME, TrainConfig, train_models

START = pd.Timestamp("2024-01-01")
TITLES_EB = ["CFO", "VP Marketing", "Chief Revenue Officer"]
TITLES_OTHER = ["Marketing Manager", "Head of IT", "SDR", "Intern", ""]


def _iso(ts: pd.Series) -> pd.Series:
    return pd.to_datetime(ts).dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _write_export(folder: Path, seed: int = 3) -> dict[str, int]:
    """Write the export; return how many rows each file has."""
    rng = np.random.default_rng(seed)
    n_acc, n_opp = 300, 480
    acc_ids = np.array([f"001{i:05d}" for i in range(n_acc)])
    accounts = pd.DataFrame(
        {
            "Id": acc_ids,
            "Name": [f"Company {i}" for i in range(n_acc)],
            "Industry": rng.choice(["Technology", "Retail", "Banking", ""], n_acc),
            "BillingCountry": rng.choice(["Germany", "USA", "Japan"], n_acc),
            "NumberOfEmployees": [f"{v:,}" for v in rng.integers(10, 5000, n_acc)],
            "AnnualRevenue": rng.integers(1, 500, n_acc) * 100_000,
            "OwnerId": np.where(rng.random(n_acc) < 0.7, "005AAA", ""),
            "ParentId": "",
        }
    )
    accounts.loc[3, "Name"] = '=HYPERLINK("http://x")'

    opp_acc = rng.integers(0, n_acc, n_opp)
    created = START + pd.to_timedelta(rng.uniform(60, 700, n_opp), unit="D")
    serious = rng.normal(size=n_opp)
    won = rng.random(n_opp) < 1 / (1 + np.exp(-(1.6 * serious - 0.2)))
    is_open = created > START + pd.Timedelta(days=640)
    close = created + pd.to_timedelta(rng.uniform(10, 120, n_opp), unit="D")
    opportunities = pd.DataFrame(
        {
            "Id": [f"006{i:05d}" for i in range(n_opp)],
            "AccountId": acc_ids[opp_acc],
            "CreatedDate": _iso(pd.Series(created)),
            "CloseDate": pd.Series(close).dt.strftime("%Y-%m-%d"),
            "StageName": np.where(is_open, "Proposal", np.where(won, "Signed", "Dead")),
            "IsClosed": np.where(is_open, "false", "true"),
            "IsWon": np.where(~is_open & won, "true", "false"),
            "Amount": [f"${v:,}" for v in rng.integers(5, 200, n_opp) * 1000],
            "LeadSource": rng.choice(["Web", "Partner", "Cold Call"], n_opp),
        }
    )

    # Contacts: an economic buyer (by title) shows up, and opens an email, before serious deals.
    contacts, tasks, events = [], [], []
    for i in range(n_opp):
        a = acc_ids[opp_acc[i]]
        if rng.random() < 1 / (1 + np.exp(-3 * serious[i])):
            contact_id = f"003{len(contacts):05d}"
            when = created[i] - pd.Timedelta(days=rng.uniform(5, 40))
            contacts.append((contact_id, a, rng.choice(TITLES_EB), when))
            tasks.append(
                (a, contact_id, when + pd.Timedelta(days=rng.uniform(0.5, 4)), "Email Open")
            )
        for _ in range(rng.integers(0, 3)):
            when = created[i] - pd.Timedelta(days=rng.uniform(1, 300))
            contacts.append((f"003{len(contacts):05d}", a, rng.choice(TITLES_OTHER), when))
        # Meetings (Tasks of type Meeting and Events) before serious deals.
        for _ in range(rng.poisson(np.exp(0.3 + 0.9 * serious[i]))):
            when = created[i] - pd.Timedelta(days=rng.uniform(0.5, 28))
            if rng.random() < 0.5:
                tasks.append((a, "", when, "Meeting"))
            else:
                events.append((a, when))
    contacts = pd.DataFrame(contacts, columns=["Id", "AccountId", "Title", "CreatedDate"])
    contacts["CreatedDate"] = _iso(contacts["CreatedDate"])
    # Calls (no ABM channel) and email opens of Leads as noise.
    for _ in range(600):
        tasks.append(
            (
                rng.choice(acc_ids),
                rng.choice(["", "00Q00001"]),
                START + pd.Timedelta(days=rng.uniform(0, 700)),
                rng.choice(["Call", "Email Open"]),
            )
        )
    task = pd.DataFrame(tasks, columns=["AccountId", "WhoId", "CreatedDate", "Type"])
    task["CreatedDate"] = _iso(task["CreatedDate"])
    task.insert(0, "Id", [f"00T{i:05d}" for i in range(len(task))])
    event = pd.DataFrame(events, columns=["AccountId", "StartDateTime"])
    event["StartDateTime"] = _iso(event["StartDateTime"])
    event.insert(0, "Id", [f"00U{i:05d}" for i in range(len(event))])
    event["WhoId"] = ""

    members = pd.DataFrame(
        {
            "Id": [f"00v{i:05d}" for i in range(120)],
            "CampaignId": "701A",
            "ContactId": rng.choice(contacts["Id"], 120),
            "Status": "Attended",
            "FirstRespondedDate": (
                START + pd.to_timedelta(rng.uniform(0, 700, 120), unit="D")
            ).strftime("%Y-%m-%d"),
            "Campaign.Type": rng.choice(["Webinar", "Conference"], 120),
        }
    )
    members.loc[:9, "FirstRespondedDate"] = ""  # registered, never responded
    roles = pd.DataFrame(
        {
            "Id": [f"00K{i:05d}" for i in range(60)],
            "OpportunityId": rng.choice(opportunities["Id"], 60),
            "ContactId": rng.choice(contacts["Id"], 60),
            "Role": rng.choice(["Decision Maker", "Evaluator", "Other", "Business User"], 60),
            "CreatedDate": "",
        }
    )
    # The oddities every table gets: orphans, bad timestamps, unmapped values, duplicates.
    contacts.loc[len(contacts)] = ["003ORPHAN", "001NOPE", "CFO", "2025-01-01T00:00:00.000Z"]
    contacts.loc[len(contacts)] = ["003BADDATE", acc_ids[0], "CFO", "yesterday"]
    opportunities.loc[len(opportunities)] = [
        "006ORPHAN",
        "001NOPE",
        "2025-01-01T00:00:00.000Z",
        "2025-02-01",
        "Signed",
        "true",
        "true",
        "$5",
        "Web",
    ]
    opportunities.loc[len(opportunities)] = [
        "00600000",
        acc_ids[1],
        "2025-01-01T00:00:00.000Z",
        "2025-02-01",
        "Signed",
        "true",
        "true",
        "$5",
        "Web",
    ]
    task.loc[len(task)] = ["00TBAD", acc_ids[0], "", "13/45/2025", "Meeting"]
    roles.loc[len(roles)] = ["00KORPHAN", "006NOPE", contacts["Id"][0], "Decision Maker", ""]

    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "Account.csv": accounts,
        "Contact.csv": contacts,
        "Opportunity.csv": opportunities,
        "OpportunityContactRole.csv": roles,
        "Task.csv": task,
        "Event.csv": event,
        "CampaignMember.csv": members,
    }
    for name, frame in files.items():
        # Windows line endings and a byte-order mark, as Data Loader on Windows writes them.
        frame.to_csv(folder / name, index=False, lineterminator="\r\n", encoding="utf-8-sig")
    return {name: len(frame) for name, frame in files.items()}


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("sfdc")
    counts = _write_export(folder / "export")
    spec = {
        "name": "hand-made-salesforce",
        "tables": {
            "preset": "salesforce",
            "dir": "export",
            "out": "rows",
            "accounts": {},
            "contacts": {},
            # This org's stage names; IsClosed/IsWon decide, the names are only shown.
            "opportunities": {},
            "contact_roles": {},
            "activities": [{"object": "Task"}, {"object": "Event"}, {"object": "CampaignMember"}],
        },
        "split": {"test_fraction": 0.25, "valid_fraction": 0.2},
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    loaded = load_spec(path)
    built = build_rows(loaded)
    paths = write_rows(built, loaded.tables.out)
    return counts, loaded, built, paths


def test_every_row_of_every_file_is_used_or_rejected(export):
    counts, _, built, paths = export
    summary = built.tables.summary
    files = {
        part["file"].rsplit("/", 1)[-1]: part for name, part in summary.items() if name != "notes"
    }
    assert set(files) == set(counts)
    for name, n in counts.items():
        assert files[name]["read"] == n, name
        assert files[name]["used"] + files[name]["rejected"] == n, name
    written = pd.read_csv(paths["rejects"])
    assert len(written) == sum(part["rejected"] for part in files.values())
    reasons = written.groupby("table")["reason"].apply(lambda r: " | ".join(r))
    assert (
        "orphan: account" in reasons["contacts"] and "unparseable timestamp" in reasons["contacts"]
    )
    assert (
        "orphan: account" in reasons["opportunities"]
        and "duplicate opportunity id" in reasons["opportunities"]
    )
    assert (
        "activity type not mapped" in reasons["activities[0]"]
        and "Call" in reasons["activities[0]"]
    )
    assert (
        "orphan: opportunity" in reasons["contact_roles"]
        and "role not used" in reasons["contact_roles"]
    )
    assert "missing timestamp" in reasons["activities[2]"]
    # Leads in WhoId count for their account; titles nobody's rule knows leave contacts roleless.
    notes = " ".join(summary["notes"])
    assert "person not in contacts" in notes and "no buying-committee role" in notes
    # The formula-looking account name never reaches a CSV as a formula.
    assert not written.astype(str).apply(lambda c: c.str.startswith("=")).any().any()


@pytest.mark.slow
def test_it_trains_and_ranks(export):
    _, spec, built, paths = export
    dataset = load_dataset(spec)
    n_opps = len(built.tables.opportunities)
    assert dataset.summary.rows_read == n_opps
    assert dataset.summary.accepted + dataset.summary.rejected == n_opps
    result = train_models(dataset, TrainConfig(n_boot=30))
    model = result.propensity[MODEL_NAME]
    assert model["roc_auc"].value > 0.7
    top = list(result.feature_importance["feature"][:5])
    assert {"sales_meetings_30d", "sales_meetings_90d", "touches_30d", "touches_90d"} & set(top), (
        top
    )
    assert {"has_economic_buyer", "economic_buyer_engaged_90d", "committee_roles_covered"} & set(
        result.feature_importance["feature"][:8]
    )
    accounts = load_accounts(paths["scoring"], scorer=result.scorer)
    ranked = rank_accounts(result.scorer, accounts, tiers=(10, 50), as_of=str(built.as_of.date()))
    assert len(ranked.ranked) + len(ranked.unscorable) == len(built.tables.accounts)
    assert len(ranked.ranked) == len(built.tables.accounts)
    assert ranked.ranked["propensity"].between(0, 1).all()
