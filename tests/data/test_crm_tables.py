"""Multi-table specs: CRM object exports read with every row used or rejected with its reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from abm_ml.data.spec import load_spec
from abm_ml.data.tables import load_tables
from abm_ml.errors import AbmInputError
from abm_ml.features.build import build_rows
from abm_ml.features.columns import MODEL_FEATURES
from abm_ml.features.point_in_time import build_training_rows
from abm_ml.synthetic.export import export_world
from abm_ml.synthetic.generate import generate_world

SPECS = Path(__file__).resolve().parents[2] / "training" / "specs"

ACCOUNT = """Id,Name,Industry,BillingCountry,NumberOfEmployees,AnnualRevenue,OwnerId,ParentId
001A,Acme,Software,Germany,"1,200",5000000,005X,
001B,Globex,Retail,France,eighty,,,001A
001A,Acme again,Software,Germany,10,,,
,No id,Retail,Spain,5,,,
"""
CONTACT = """Id,AccountId,Title,CreatedDate
003A,001A,Chief Financial Officer,2025-01-02T09:00:00.000Z
003B,001A,Procurement Manager,2025-01-03T09:00:00.000Z
003C,001B,Intern,2025-01-04T09:00:00.000Z
003D,001Z,VP Sales,2025-01-05T09:00:00.000Z
003E,001B,Head of RevOps,not a date
"""
OPPORTUNITY = """Id,AccountId,CreatedDate,CloseDate,StageName,IsClosed,IsWon,Amount,LeadSource
006A,001A,2025-02-01T10:00:00.000Z,2025-03-01,Closed Won,true,true,"12,000",Web
006B,001A,2025-04-01T10:00:00.000Z,2025-09-30,Prospecting,false,false,8000,Partner
006C,001B,2025-02-10T10:00:00.000Z,,Closed Lost,true,false,1000,Web
006D,001Q,2025-02-10T10:00:00.000Z,2025-03-01,Closed Lost,true,false,1000,Web
006E,001B,2025-05-10T10:00:00.000Z,2025-05-01,Closed Lost,true,false,1000,Web
006F,001B,2025-05-10T10:00:00.000Z,2025-06-01,Closed Lost,maybe,false,1000,Web
"""
ROLES = """Id,OpportunityId,ContactId,Role,CreatedDate
00KA,006A,003A,Economic Buyer,2025-02-01T11:00:00.000Z
00KB,006A,003C,Other,2025-02-01T11:00:00.000Z
00KC,006Q,003A,Economic Buyer,2025-02-01T11:00:00.000Z
00KD,006A,003Q,Influencer,2025-02-01T11:00:00.000Z
00KE,006B,003C,Gatekeeper,2025-04-01T11:00:00.000Z
00KF,006B,003C,Business User,
"""
TASK = """Id,AccountId,WhoId,CreatedDate,Type,Subject
00TA,001A,003A,2025-01-20T10:00:00.000Z,Meeting,Intro
00TB,,003B,2025-01-21T10:00:00.000Z,Email Click,Newsletter
00TC,001A,00QLEAD,2025-01-22T10:00:00.000Z,Email Open,Lead opened
00TD,,00QLEAD,2025-01-22T10:00:00.000Z,Email Open,Lead without account
00TE,001A,003A,2025-01-23T10:00:00.000Z,Call,Cold call
00TF,001A,003A,31/01/2025,Meeting,Bad date
00TG,001Z,,2025-01-24T10:00:00.000Z,Meeting,Unknown account
00TH,001A,003A,2025-01-25T10:00:00.000Z,,No type
"""
CAMPAIGN_MEMBER = """Id,CampaignId,ContactId,Status,FirstRespondedDate,Campaign.Type
00vA,701A,003B,Attended,2025-01-15,Webinar
00vB,701A,003C,Registered,,Webinar
00vC,701B,003A,Attended,2025-01-16,Billboard
"""


def _write_export(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "Account.csv": ACCOUNT,
        "Contact.csv": CONTACT,
        "Opportunity.csv": OPPORTUNITY,
        "OpportunityContactRole.csv": ROLES,
        "Task.csv": TASK,
        "CampaignMember.csv": CAMPAIGN_MEMBER,
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    spec = {
        "name": "tiny-salesforce",
        "tables": {
            "preset": "salesforce",
            "out": "rows",
            "as_of": "2025-06-01",
            "accounts": {},
            "contacts": {},
            "opportunities": {},
            "contact_roles": {},
            "activities": [{"object": "Task"}, {"object": "CampaignMember"}],
        },
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture()
def tiny(tmp_path: Path):
    spec = load_spec(_write_export(tmp_path / "export"))
    return spec, load_tables(spec.tables)


def _rejects(tables, table: str) -> dict[int, str]:
    r = tables.rejects[tables.rejects["table"] == table]
    return dict(zip(r["line"].astype(int), r["reason"]))


def test_every_row_of_every_table_is_used_or_rejected(tiny):
    _, tables = tiny
    expected_read = {
        "accounts": 4,
        "contacts": 5,
        "opportunities": 6,
        "contact_roles": 6,
        "activities[0]": 8,
        "activities[1]": 3,
    }
    for name, read in expected_read.items():
        part = tables.summary[name]
        assert part["read"] == read, name
        assert part["used"] + part["rejected"] == read, name
        assert part["rejected"] == len(_rejects(tables, name)), name
    used = {
        "accounts": len(tables.accounts),
        "contacts": len(tables.contacts),
        "opportunities": len(tables.opportunities),
        "contact_roles": len(tables.contact_roles),
    }
    assert used == {"accounts": 2, "contacts": 3, "opportunities": 2, "contact_roles": 2}
    assert len(tables.activities) == tables.summary["activities[0]"]["used"] + 1
    assert set(tables.rejects.columns) >= {"table", "file", "line", "reason"}
    assert tables.rejects["file"].str.endswith(".csv").all()


def test_rejects_name_table_line_and_reason(tiny):
    _, tables = tiny
    accounts = _rejects(tables, "accounts")
    assert accounts[4].startswith("duplicate account id (first on line 2")
    assert accounts[5] == "missing account id"
    contacts = _rejects(tables, "contacts")
    assert contacts[5].startswith("orphan: account not in accounts")
    assert contacts[6].startswith("unparseable timestamp")
    opps = _rejects(tables, "opportunities")
    assert opps[4] == "won or lost deal without a close date"
    assert opps[5].startswith("orphan: account")
    assert opps[6] == "closed before it was created"
    assert opps[7].startswith("not a yes/no value")
    roles = _rejects(tables, "contact_roles")
    assert roles[3].startswith("role not used by abm-ml")
    assert roles[4].startswith("orphan: opportunity")
    assert roles[5].startswith("orphan: contact")
    assert roles[6].startswith("role not mapped")
    tasks = _rejects(tables, "activities[0]")
    assert set(tasks) == {5, 6, 7, 8, 9}
    assert tasks[5].startswith("orphan: contact not in contacts and no account")
    assert tasks[6].startswith("activity type not mapped") and "Call" in tasks[6]
    assert tasks[7].startswith("unparseable timestamp") and "31/01/2025" in tasks[7]
    assert tasks[8].startswith("orphan: account")
    assert tasks[9].startswith("missing type")
    members = _rejects(tables, "activities[1]")
    assert members[3].startswith("missing timestamp")
    assert members[4].startswith("activity type not mapped")


def test_values_are_mapped_as_the_crm_means_them(tiny):
    _, tables = tiny
    acc = tables.accounts.set_index("account_id")
    assert acc.loc["001A", "employees"] == 1200.0 and acc.loc["001A", "segment"] == "enterprise"
    assert np.isnan(acc.loc["001B", "employees"])  # "eighty": read as missing, noted
    assert any("eighty" not in n and "NumberOfEmployees" in n for n in tables.summary["notes"])
    assert acc.loc["001A", "owner_assigned"] and not acc.loc["001B", "owner_assigned"]
    roles = tables.contacts.set_index("contact_id")["role"].astype(object)
    # Titles only: the rules give the roles; "Intern" matches none and stays without one.
    assert roles.where(roles.notna(), None).to_dict() == {
        "003A": "economic_buyer",
        "003B": "procurement",
        "003C": None,
    }
    opp = tables.opportunities.set_index("opportunity_id")
    assert opp.loc["006A", "outcome"] == "won" and opp.loc["006B", "outcome"] == "open"
    # A date-only close is known at the end of its day; an open deal's forecast is dropped.
    assert opp.loc["006A", "closed_at"] == pd.Timestamp("2025-03-01 23:59:59")
    assert pd.isna(opp.loc["006B", "closed_at"])
    assert opp.loc["006A", "amount"] == 12000.0
    # The lead's touch with an account counts for the account, without a contact.
    lead = tables.activities[tables.activities["occurred_at"] == pd.Timestamp("2025-01-22 10:00")]
    assert list(lead["account_id"]) == ["001A"] and lead["contact_id"].isna().all()
    # A Task with no AccountId takes its contact's account.
    click = tables.activities[tables.activities["channel"] == "email_click"]
    assert list(click["account_id"]) == ["001A"]
    webinar = tables.activities[tables.activities["channel"] == "webinar_attended"]
    assert list(webinar["occurred_at"]) == [pd.Timestamp("2025-01-15 23:59:59")]


def test_rows_built_from_the_tiny_export(tiny):
    spec, _ = tiny
    built = build_rows(spec)
    rows = built.training.set_index("row_id")
    assert list(rows.index) == ["006A", "006B"]
    # As of 006B's creation: 006A won before, the economic buyer known, meetings counted.
    assert rows.loc["006B", "prior_won_deals"] == 1
    assert rows.loc["006A", "prior_won_deals"] == 0
    assert rows.loc["006B", "has_economic_buyer"] and rows.loc["006B", "has_procurement"]
    assert rows.loc["006A", "sales_meetings_30d"] == 1
    assert built.as_of == pd.Timestamp("2025-06-01")
    assert list(built.scoring["account_id"]) == ["001A", "001B"]


def test_a_missing_required_column_names_file_and_spec_key(tmp_path: Path):
    path = _write_export(tmp_path / "export")
    (tmp_path / "export" / "Contact.csv").write_text(
        "Id,Account,Title,CreatedDate\n003A,001A,CFO,2025-01-01\n"
    )
    spec = load_spec(path)
    with pytest.raises(AbmInputError) as error:
        load_tables(spec.tables)
    message = str(error.value)
    assert "Contact.csv" in message and "'AccountId'" in message
    assert "tables.contacts.columns.account_id" in message


def test_spec_errors_name_the_field(tmp_path: Path):
    bad = {
        "name": "x",
        "tables": {"preset": "salesforce", "out": "o", "activities": [{"object": "Lead"}]},
    }
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(AbmInputError, match=r"activities\[0\]: salesforce has no object 'Lead'"):
        load_spec(path)
    bad["tables"]["activities"] = [{"object": "Task", "columns": {"when": "X"}}]
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(AbmInputError, match="unknown column roles"):
        load_spec(path)


@pytest.mark.parametrize(
    ("fmt", "spec_name"),
    [
        ("salesforce", "synthetic-salesforce"),
        ("hubspot", "synthetic-hubspot"),
        ("parquet", "synthetic-tables"),
    ],
)
def test_synthetic_exports_rebuild_the_worlds_rows(tmp_path, monkeypatch, fmt, spec_name):
    world = generate_world(300, seed=11)
    export_world(world, tmp_path / ("tables" if fmt == "parquet" else fmt), fmt)
    monkeypatch.setenv("ABM_ML_SYNTH_DIR", str(tmp_path))
    built = build_rows(load_spec(SPECS / f"{spec_name}.yaml"))
    assert len(built.tables.rejects) == 0
    assert all(
        part["read"] == part["used"]
        for name, part in built.tables.summary.items()
        if name != "notes"
    )
    ref = build_training_rows(world)
    got = built.training
    assert len(got) == len(ref)
    # Salesforce's CloseDate has no time (read as the end of its day): a deal closed on the
    # day another was created may count as prior one day later. Nothing else may differ.
    approximate = {"prior_won_deals", "prior_lost_deals"} if fmt == "salesforce" else set()
    for col in MODEL_FEATURES:
        a = ref[col].astype(object).where(ref[col].notna(), None).to_numpy()
        b = got[col].astype(object).where(got[col].notna(), None).to_numpy()
        same = np.array(
            [x == y or (isinstance(x, float) and abs(x - y) < 1e-6) for x, y in zip(a, b)]
        )
        if col in approximate:
            assert same.mean() > 0.99, col
        else:
            assert same.all(), (col, a[~same][:3], b[~same][:3])


def test_the_docs_worked_example_is_a_valid_spec(tmp_path: Path):
    from abm_ml.data.spec import parse_spec

    doc = (Path(__file__).resolve().parents[2] / "docs" / "crm-objects.md").read_text()
    example = doc.split("training/specs/acme-salesforce.yaml`:\n\n```yaml\n", 1)[1].split("```")[0]
    spec = parse_spec(yaml.safe_load(example), spec_path=tmp_path / "acme.yaml")
    assert spec.tables.preset == "salesforce"
    assert spec.tables.activities[0].values["Call"] == "-"
    assert spec.source.path.endswith("data/acme-salesforce/training_rows.parquet")
    assert spec.tables.contacts.path.endswith("exports/sfdc/Contact.csv")


def test_rows_command_in_a_subprocess(tmp_path: Path):
    import json
    import subprocess
    import sys

    path = _write_export(tmp_path / "export")
    run = [sys.executable, "-m", "abm_ml.cli", "rows", str(path), "--json"]
    done = subprocess.run(run, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["training_rows"] == 2 and summary["scoring_rows"] == 2
    assert summary["tables"]["activities[0]"] == {
        "file": str(tmp_path / "export" / "Task.csv"),
        "read": 8,
        "used": 3,
        "rejected": 5,
        "rejected_by_reason": summary["tables"]["activities[0]"]["rejected_by_reason"],
    }
    rejects = pd.read_csv(summary["files"]["rejects"])
    assert len(rejects) == sum(t["rejected"] for t in summary["tables"].values())
    flat = tmp_path / "flat.yaml"
    flat.write_text("name: x\nsource: {path: a.csv}\nlabel: {column: y, won: [1], lost: [0]}\n")
    done = subprocess.run(
        [sys.executable, "-m", "abm_ml.cli", "rows", str(flat)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "has no `tables:` part" in done.stderr + done.stdout


def test_values_must_map_to_what_abm_ml_knows(tmp_path: Path):
    spec = {
        "name": "x",
        "tables": {
            "preset": "salesforce",
            "out": "o",
            "activities": [{"object": "Task", "values": {"Demo": "sales_meetings"}}],
        },
    }
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(AbmInputError, match=r"activities\[0\]\.values: \['sales_meetings'\]"):
        load_spec(path)
    spec["tables"]["activities"] = [{"path": "web.csv", "channel": "webvisit"}]
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(AbmInputError, match="'webvisit' is not one of web_visit"):
        load_spec(path)
    spec["tables"]["activities"] = []
    spec["tables"]["opportunities"] = {"values": {"Signed": "win"}}
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(AbmInputError, match=r"opportunities\.values: \['win'\] not among won"):
        load_spec(path)


def test_tables_from_sql(tmp_path: Path):
    import io

    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    for name, text in {
        "Account": ACCOUNT,
        "Contact": CONTACT,
        "Opportunity": OPPORTUNITY,
        "Task": TASK,
    }.items():
        pd.read_csv(io.StringIO(text), dtype=str).to_sql(name, engine, index=False)
    engine.dispose()
    spec = {
        "name": "sql",
        "tables": {
            "preset": "salesforce",
            "out": "rows",
            "accounts": {"url": "sqlite:///crm.db", "table": "Account"},
            "contacts": {"url": "sqlite:///crm.db", "table": "Contact"},
            "opportunities": {"url": "sqlite:///crm.db", "query": "SELECT * FROM Opportunity"},
            "activities": [{"object": "Task", "url": "sqlite:///crm.db", "table": "Task"}],
        },
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    tables = load_tables(load_spec(path).tables)
    assert len(tables.accounts) == 2 and len(tables.opportunities) == 2
    # SQL rows are numbered from 1 (no header line): the same rows rejected, one line lower.
    assert set(_rejects(tables, "activities[0]")) == {4, 5, 6, 7, 8}
    assert tables.summary["activities[0]"]["used"] == 3
