"""A synthetic campaign world whose campaign effects are known, for the ROI and pilot reports.

Each account has a baseline propensity to open an opportunity during the year. Three campaigns
touch accounts, with planted effects a correct analysis must recover:

* **A** (``events``) reaches a random quarter of the accounts and truly raises opportunity
  creation: a touched account opens an extra opportunity with probability :data:`LIFT_A`,
  7-60 days after the touch.
* **B** (``paid_media``) reaches a random 30 % of the accounts all year and does nothing.
* **C** (``email``) does nothing either, but only reaches accounts that would have bought
  anyway: it touches in-market accounts a few days before the opportunity they were going to
  open regardless (think of a sequence triggered by intent), and otherwise only high-baseline
  accounts. Last-touch attribution hands it most of the pipeline; a randomised control
  group shows it has no effect.

:func:`simulate_pilot` plays a pilot forward: the pilot arm is worked with one campaign, the
control arm is not, and both open opportunities from the same baselines, so the measured lift
is the campaign's planted effect (``LIFT_A`` for A, zero for B and C).

Everything is vectorised with numpy and seeded; the tables come out with the canonical columns
of :mod:`abm_ml.roi.tables` and :meth:`CampaignWorld.save` writes them as CSV files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from abm_ml.schema import ACCOUNT_ID, AMOUNT, CLOSED_AT, CREATED_AT, LOST, OPEN, OUTCOME, WON

LIFT_A = 0.20
"""Planted effect of campaign A: extra probability that a touched account opens an opportunity."""
PLANTED_LIFT = {"A": LIFT_A, "B": 0.0, "C": 0.0}
"""The true effect of each campaign on opportunity creation (the answer the reports must give)."""
CAMPAIGNS = pd.DataFrame(
    {
        "campaign_id": ["A", "B", "C"],
        "name": ["Executive roundtables", "Display retargeting", "In-market email sequence"],
        "channel": ["events", "paid_media", "email"],
        "cost": [120_000.0, 80_000.0, 40_000.0],
    }
)
WIN_RATE = 0.3
"""Share of closed opportunities won, whoever caused them (the campaigns move creation only)."""
MEDIAN_DAYS_TO_CLOSE = 60.0
MEDIAN_AMOUNT = 30_000.0


@dataclass
class CampaignWorld:
    """The tables of a planted campaign world and the truth behind them.

    Attributes:
        accounts: ``account_id, is_target`` and the hidden ``baseline`` yearly propensity.
        campaigns: ``campaign_id, name, channel, cost, start, end``.
        touches: ``campaign_id, account_id, touched_at, responded``.
        opportunities: ``opportunity_id, account_id, created_at, closed_at, outcome, amount``
            and the hidden ``caused_by`` (the campaign that caused it, empty for baseline ones).
        ranking: What a propensity model would rank: ``account_id, propensity, score, rank``
            (a noisy view of the baseline).
        start: First day of the campaign year.
        as_of: Day the tables were exported (opportunities not closed by then are open).
    """

    accounts: pd.DataFrame
    campaigns: pd.DataFrame
    touches: pd.DataFrame
    opportunities: pd.DataFrame
    ranking: pd.DataFrame
    start: pd.Timestamp
    as_of: pd.Timestamp

    def truth(self) -> dict:
        """The planted facts: effect per campaign and the opportunities each truly caused."""
        caused = self.opportunities["caused_by"].value_counts().to_dict()
        return {
            "planted_lift": PLANTED_LIFT,
            "caused_opportunities": {c: int(caused.get(c, 0)) for c in PLANTED_LIFT},
            "win_rate": WIN_RATE,
            "start": str(self.start.date()),
            "as_of": str(self.as_of.date()),
        }

    def save(self, folder: Path) -> dict[str, Path]:
        """Write the four input tables as CSV (without the hidden columns) and ``truth.json``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tables = {
            "campaigns": self.campaigns,
            "touches": self.touches,
            "opportunities": self.opportunities.drop(columns=["caused_by"]),
            "accounts": self.accounts.drop(columns=["baseline"]),
        }
        paths = {}
        for name, frame in tables.items():
            paths[name] = folder / f"{name}.csv"
            frame.to_csv(paths[name], index=False, date_format="%Y-%m-%d")
        (folder / "truth.json").write_text(json.dumps(self.truth(), indent=2), encoding="utf-8")
        return paths


def _days(rng: np.random.Generator, low: float, high: float, size: int) -> pd.TimedeltaIndex:
    return pd.to_timedelta(np.floor(rng.uniform(low, high, size)), unit="D")


def _opportunities(
    rng: np.random.Generator,
    account_ids: np.ndarray,
    created: pd.DatetimeIndex | pd.Series,
    caused_by: np.ndarray,
    as_of: pd.Timestamp,
    prefix: str,
) -> pd.DataFrame:
    """Opportunities with outcomes drawn the same way whatever caused them."""
    n = len(account_ids)
    created = pd.DatetimeIndex(created)
    days = np.ceil(MEDIAN_DAYS_TO_CLOSE * np.exp(rng.normal(0.0, 0.5, n)))
    closed = created + pd.to_timedelta(days, unit="D")
    won = rng.random(n) < WIN_RATE
    still_open = closed > as_of
    outcome = np.where(still_open, OPEN, np.where(won, WON, LOST))
    return pd.DataFrame(
        {
            "opportunity_id": [f"{prefix}{i:06d}" for i in range(n)],
            ACCOUNT_ID: account_ids,
            CREATED_AT: created,
            CLOSED_AT: pd.Series(closed).where(~still_open).to_numpy(),
            OUTCOME: outcome,
            AMOUNT: np.round(MEDIAN_AMOUNT * np.exp(rng.normal(0.0, 0.6, n)), 2),
            "caused_by": caused_by,
        }
    )


def generate_campaign_world(
    n_accounts: int = 4000, seed: int = 7, start: str = "2025-01-01"
) -> CampaignWorld:
    """Draw a campaign year with the planted effects described in the module docstring.

    Args:
        n_accounts: Accounts in the world.
        seed: Random seed; the same seed gives the same world.
        start: First day of the campaign year; the tables are exported 90 days after its end.
    """
    if n_accounts < 10:
        raise ValueError("n_accounts must be at least 10")
    rng = np.random.default_rng(seed)
    first = pd.Timestamp(start)
    year_end = first + pd.Timedelta(days=364)
    as_of = year_end + pd.Timedelta(days=90)
    ids = np.array([f"ACC-{i:05d}" for i in range(n_accounts)])
    baseline = 1.0 / (1.0 + np.exp(-rng.normal(-2.0, 1.0, n_accounts)))
    accounts = pd.DataFrame(
        {ACCOUNT_ID: ids, "is_target": rng.random(n_accounts) < 0.7, "baseline": baseline}
    )

    # Baseline opportunities: who would open one this year with no campaign at all.
    buys = rng.random(n_accounts) < baseline
    buyer_ids = ids[buys]
    buyer_created = first + _days(rng, 0, 365, int(buys.sum()))

    campaigns = CAMPAIGNS.assign(
        start=[first + pd.Timedelta(days=31), first, first],
        end=[first + pd.Timedelta(days=119), year_end, year_end],
    )
    touch_parts = []
    # A: a random quarter, during February to April; each touch may cause an opportunity.
    reached_a = rng.random(n_accounts) < 0.25
    touched_a = campaigns.at[0, "start"] + _days(rng, 0, 89, int(reached_a.sum()))
    touch_parts.append(("A", ids[reached_a], touched_a, 0.4))
    # B: a random 30 %, any time of the year.
    reached_b = rng.random(n_accounts) < 0.3
    touch_parts.append(
        ("B", ids[reached_b], first + _days(rng, 0, 365, int(reached_b.sum())), 0.05)
    )
    # C: in-market accounts just before the opportunity they were opening anyway, and
    # otherwise only accounts in the top fifth of baselines.
    before = rng.random(len(buyer_ids)) < 0.85
    high = (baseline >= np.quantile(baseline, 0.8)) & ~buys & (rng.random(n_accounts) < 0.3)
    c_ids = np.concatenate([buyer_ids[before], ids[high]])
    c_when = np.concatenate(
        [
            (buyer_created[before] - _days(rng, 2, 22, int(before.sum()))).to_numpy(),
            (first + _days(rng, 0, 365, int(high.sum()))).to_numpy(),
        ]
    )
    c_when = np.maximum(c_when, first.to_datetime64())
    touch_parts.append(("C", c_ids, pd.DatetimeIndex(c_when), 0.3))
    touches = pd.concat(
        [
            pd.DataFrame(
                {
                    "campaign_id": campaign,
                    ACCOUNT_ID: who,
                    "touched_at": pd.DatetimeIndex(when),
                    "responded": rng.random(len(who)) < respond,
                }
            )
            for campaign, who, when, respond in touch_parts
        ],
        ignore_index=True,
    )

    caused = rng.random(int(reached_a.sum())) < LIFT_A
    caused_created = touched_a[caused] + _days(rng, 7, 61, int(caused.sum()))
    opportunities = _opportunities(
        rng,
        np.concatenate([buyer_ids, ids[reached_a][caused]]),
        np.concatenate([buyer_created.to_numpy(), caused_created.to_numpy()]),
        np.array([""] * len(buyer_ids) + ["A"] * int(caused.sum()), dtype=object),
        as_of,
        "OPP-",
    )
    return CampaignWorld(
        accounts=accounts,
        campaigns=campaigns[["campaign_id", "name", "channel", "cost", "start", "end"]],
        touches=touches.sort_values(["touched_at", ACCOUNT_ID], kind="stable").reset_index(
            drop=True
        ),
        opportunities=opportunities,
        ranking=_ranking(rng, ids, baseline),
        start=first,
        as_of=as_of,
    )


def _ranking(rng: np.random.Generator, ids: np.ndarray, baseline: np.ndarray) -> pd.DataFrame:
    """A model's view of the accounts: the baseline seen through noise, ranked best first."""
    propensity = np.clip(baseline * np.exp(rng.normal(0.0, 0.3, len(ids))), 0.0, 1.0)
    order = np.argsort(-propensity, kind="stable")
    ranking = pd.DataFrame(
        {
            ACCOUNT_ID: ids[order],
            "propensity": propensity[order],
            "score": np.round(propensity[order] * 100).astype(int),
            "rank": np.arange(1, len(ids) + 1),
        }
    )
    return ranking


def simulate_pilot(
    world: CampaignWorld,
    assignment: pd.DataFrame,
    campaign: str,
    started_on: str | pd.Timestamp,
    days: int = 120,
    seed: int = 11,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Play a pilot forward: the pilot arm is worked with ``campaign``, the control arm is not.

    Both arms open opportunities from their baselines (scaled to ``days``) and receive the usual
    marketing (B, no effect); the pilot arm is touched by ``campaign`` instead and adds its
    planted effect (:data:`PLANTED_LIFT`). Only what is observed by
    ``started_on + days`` is returned, as the two tables a pilot report reads.

    Args:
        world: The world whose accounts' baselines drive the outcomes.
        assignment: ``account_id`` and ``arm`` (``pilot`` or ``control``), as the pilot stored it.
        campaign: ``A``, ``B`` or ``C``.
        started_on: First day of the pilot.
        days: Length of the pilot; outcomes are observed at its end.
        seed: Random seed.

    Returns:
        The pilot period's touches and opportunities, with canonical columns.
    """
    if campaign not in PLANTED_LIFT:
        raise ValueError(f"campaign must be one of {sorted(PLANTED_LIFT)}")
    rng = np.random.default_rng(seed)
    first = pd.Timestamp(started_on)
    end = first + pd.Timedelta(days=days)
    baseline = world.accounts.set_index(ACCOUNT_ID)["baseline"]
    ids = assignment[ACCOUNT_ID].astype(str).to_numpy()
    worked = (assignment["arm"] == "pilot").to_numpy()
    period_propensity = 1.0 - (1.0 - baseline.reindex(ids).to_numpy()) ** (days / 365.0)
    buys = rng.random(len(ids)) < period_propensity
    created = first + _days(rng, 0, days, len(ids))
    touched = first + _days(rng, 0, 14, len(ids))
    caused = worked & (rng.random(len(ids)) < PLANTED_LIFT[campaign])
    caused_created = touched + _days(rng, 7, 61, len(ids))
    opportunities = _opportunities(
        rng,
        np.concatenate([ids[buys], ids[caused]]),
        np.concatenate([created[buys].to_numpy(), caused_created[caused].to_numpy()]),
        np.array([""] * int(buys.sum()) + [campaign] * int(caused.sum()), dtype=object),
        end,
        "PILOT-",
    )
    opportunities = opportunities[opportunities[CREATED_AT] <= end].reset_index(drop=True)
    # Both arms keep getting the usual marketing (B's reach and response, and no effect).
    usual = rng.random(len(ids)) < 0.3
    touches = pd.DataFrame(
        {
            "campaign_id": np.where(worked, campaign, "B")[worked | usual],
            ACCOUNT_ID: ids[worked | usual],
            "touched_at": np.where(worked, touched, first + _days(rng, 0, days, len(ids)))[
                worked | usual
            ],
            "responded": (rng.random(len(ids)) < np.where(worked, 0.4, 0.05))[worked | usual],
        }
    )
    return touches, opportunities
