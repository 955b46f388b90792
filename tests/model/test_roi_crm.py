"""Campaign ROI from a Salesforce-shaped export through a tables spec equals the plain-file ROI.

A small export is drawn here (Account, Contact, Opportunity, CampaignMember, Task) together with
the plain files holding the same facts; campaign costs come from one campaigns file in both.
Salesforce's CloseDate and FirstRespondedDate are dates without a time, which the CRM reader
takes as known at the end of their day, so the plain files carry those instants (23:59:59).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from abm_ml.data.spec import load_spec
from abm_ml.data.tables import load_tables as load_crm
from abm_ml.errors import AbmInputError
from abm_ml.roi.report import compute_roi
from abm_ml.roi.tables import load_crm_tables, load_tables

START = pd.Timestamp("2025-01-01")
CAMPAIGNS = ("701WEB", "701EML", "701ADS")
TYPES = {"701WEB": "Webinar", "701EML": "Email", "701ADS": "Advertisement"}


def _day(ts: pd.Series) -> pd.Series:
    return ts.dt.strftime("%Y-%m-%d")


def _end_of_day(ts: pd.Series) -> pd.Series:
    return ts.dt.strftime("%Y-%m-%d 23:59:59")


def _write(folder: Path, seed: int = 5) -> dict[str, Path]:
    """The Salesforce export in ``folder/sf``, its spec, and the plain files with the same rows."""
    rng = np.random.default_rng(seed)
    sf, plain = folder / "sf", folder / "plain"
    sf.mkdir()
    plain.mkdir()
    n_acc = 60
    acc = np.array([f"001X{i:04d}" for i in range(n_acc)])
    pd.DataFrame({"Id": acc, "Name": [f"Co {i}" for i in range(n_acc)]}).to_csv(
        sf / "Account.csv", index=False
    )
    pd.DataFrame({"account_id": acc}).to_csv(plain / "accounts.csv", index=False)
    con = np.array([f"003X{i:04d}" for i in range(n_acc)])
    pd.DataFrame(
        {"Id": con, "AccountId": acc, "Title": "CFO", "CreatedDate": "2024-06-01T00:00:00.000Z"}
    ).to_csv(sf / "Contact.csv", index=False)

    n_mem = 140
    who = rng.integers(0, n_acc, n_mem)
    campaign = rng.choice(CAMPAIGNS, n_mem).astype(object)
    campaign[:3] = "701GONE"  # a campaign the costs file does not know: reported, not used
    responded = START + pd.to_timedelta(rng.integers(0, 300, n_mem), unit="D")
    members = pd.DataFrame(
        {
            "Id": [f"00vX{i:04d}" for i in range(n_mem)],
            "CampaignId": campaign,
            "ContactId": con[who],
            "FirstRespondedDate": _day(pd.Series(responded)),
            "Campaign.Type": [TYPES.get(c, "Webinar") for c in campaign],
        }
    )
    members.loc[5, "FirstRespondedDate"] = ""  # no response date: the CRM reader rejects it
    members.to_csv(sf / "CampaignMember.csv", index=False)
    touches = pd.DataFrame(
        {
            "campaign_id": campaign,
            "account_id": acc[who],
            "touched_at": _end_of_day(pd.Series(responded)),
        }
    ).drop(index=5)
    touches.to_csv(plain / "touches.csv", index=False)

    n_opp = 50
    owner = rng.integers(0, n_acc, n_opp)
    created = START + pd.to_timedelta(rng.uniform(20, 360, n_opp), unit="D").round("s")
    closed = created + pd.to_timedelta(rng.integers(5, 120, n_opp), unit="D")
    won = rng.random(n_opp) < 0.4
    is_open = rng.random(n_opp) < 0.2
    amount = rng.integers(5, 80, n_opp) * 1000.0
    ids = [f"006X{i:04d}" for i in range(n_opp)]
    pd.DataFrame(
        {
            "Id": ids,
            "AccountId": acc[owner],
            "CreatedDate": pd.Series(created).dt.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "CloseDate": _day(pd.Series(closed)),  # an open deal's is the forecast: not used
            "StageName": np.where(is_open, "Proposal", np.where(won, "Closed Won", "Closed Lost")),
            "IsClosed": np.where(is_open, "false", "true"),
            "IsWon": np.where(won & ~is_open, "true", "false"),
            "Amount": amount,
            "LeadSource": "Web",
        }
    ).to_csv(sf / "Opportunity.csv", index=False)
    pd.DataFrame(
        {
            "opportunity_id": ids,
            "account_id": acc[owner],
            "created_at": pd.Series(created).dt.strftime("%Y-%m-%d %H:%M:%S"),
            "closed_at": np.where(is_open, "", _end_of_day(pd.Series(closed))),
            "outcome": np.where(is_open, "open", np.where(won, "won", "lost")),
            "amount": amount,
        }
    ).to_csv(plain / "opportunities.csv", index=False)

    n_task = 90
    visited = START + pd.to_timedelta(rng.uniform(0, 360, n_task), unit="D").round("s")
    task_acc = acc[rng.integers(0, n_acc, n_task)]
    pd.DataFrame(
        {
            "AccountId": task_acc,
            "WhoId": "",
            "CreatedDate": pd.Series(visited).dt.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "Type": "Web Visit",
        }
    ).to_csv(sf / "Task.csv", index=False)
    pd.DataFrame(
        {"account_id": task_acc, "occurred_at": pd.Series(visited).dt.strftime("%Y-%m-%d %H:%M:%S")}
    ).to_csv(plain / "activities.csv", index=False)

    pd.DataFrame(
        {
            "campaign_id": CAMPAIGNS,
            "name": ["Webinar series", "Nurture email", "Display ads"],
            "channel": ["webinar", "email", "paid"],
            "cost": [12000, 3000, 20000],
            "start": "2025-01-01",
            "end": "2025-12-31",
        }
    ).to_csv(folder / "campaigns.csv", index=False)
    spec = {
        "name": "roi-salesforce",
        "tables": {
            "preset": "salesforce",
            "dir": "sf",
            "out": "rows",
            "accounts": {},
            "contacts": {},
            "opportunities": {},
            "activities": [{"object": "CampaignMember"}, {"object": "Task"}],
        },
    }
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return {
        "spec": folder / "spec.yaml",
        "campaigns": folder / "campaigns.csv",
        **{name: plain / f"{name}.csv" for name in ("touches", "opportunities", "accounts")},
        "activities": plain / "activities.csv",
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    return _write(tmp_path_factory.mktemp("roi-crm"))


def test_campaign_members_keep_their_campaign_id(files):
    crm = load_crm(load_spec(files["spec"]).tables)
    members = crm.activities[crm.activities["campaign_id"].notna()]
    assert len(members) == 139 and set(members["campaign_id"]) == {*CAMPAIGNS, "701GONE"}
    # The Task rows have none; the features read the same activities as before.
    assert crm.activities["campaign_id"].isna().sum() == 90


def test_roi_from_the_crm_spec_equals_the_plain_files(files):
    plain = load_tables(
        files["campaigns"],
        files["touches"],
        files["opportunities"],
        files["accounts"],
        activities=files["activities"],
    )
    crm = load_crm_tables(files["campaigns"], load_spec(files["spec"]))
    assert len(crm.touches) == len(plain.touches) == 136
    want = compute_roi(plain, n_boot=100).to_dict()
    got = compute_roi(crm, n_boot=100).to_dict()
    assert want["by_campaign"][0]["opportunities_touched"] > 0
    for part in ("by_campaign", "by_channel", "velocity", "period", "notes"):
        assert got[part] == want[part], part
    # Every row is used or rejected: the orphan campaign's touches in both, the member
    # without a response date by the CRM reader (the plain touches file never had it).
    assert got["accounting"]["touches"] == {"read": 139, "used": 136, "rejected": 3}
    crm_rejects = crm.rejects[crm.rejects["table"].str.startswith("crm:")]
    assert len(crm_rejects) == 1 and "FirstRespondedDate" in crm_rejects["reason"].iloc[0]


def test_a_spec_without_campaign_members_is_refused(files, tmp_path):
    spec = yaml.safe_load(files["spec"].read_text())
    spec["tables"]["dir"] = str(files["spec"].parent / "sf")
    spec["tables"]["activities"] = [{"object": "Task"}]
    path = tmp_path / "no-members.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(AbmInputError, match="campaign id"):
        load_crm_tables(files["campaigns"], load_spec(path))


def test_the_roi_command_reads_the_spec(files, tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "abm_ml.cli",
                "roi",
                "--campaigns",
                str(files["campaigns"]),
                *args,
            ],
            capture_output=True,
            text=True,
            check=False,
        )

    done = run("--spec", str(files["spec"]), "--out", str(tmp_path / "crm"))
    assert done.returncode == 0, done.stderr
    again = run(
        *("--touches", str(files["touches"]), "--opportunities", str(files["opportunities"])),
        *("--accounts", str(files["accounts"]), "--activities", str(files["activities"])),
        *("--out", str(tmp_path / "plain")),
    )
    assert again.returncode == 0, again.stderr
    crm, plain = (json.loads((tmp_path / d / "roi.json").read_text()) for d in ("crm", "plain"))
    assert crm["by_campaign"] == plain["by_campaign"]
    mixed = run("--spec", str(files["spec"]), "--touches", str(files["touches"]))
    assert mixed.returncode == 2 and "--touches" in mixed.stderr and "Traceback" not in mixed.stderr
