"""Did the ranking work? The scores as issued (from the score history) against what happened next.

A later export with outcomes, read by the same spec as the training data, says which accounts
won a deal after the scores were issued: a deal counts when it closed (or, without close
dates, was created) after the run's as-of date, up to the export's last date. Every account of
the run is counted: an account with no won deal in that window did not buy.

The figures: realised win rate and won revenue per ABM tier and per score decile, ROC AUC and
calibration of the scores as issued, how much of the won revenue each tier held, and the won
accounts that sat in the bottom tier (with the reasons they were given, when the run's ranking
file is at hand) for a human to review.

Issued propensities are per deal at its creation; an account's chance of closing a deal within
the window is another quantity, so calibration here is a comparison, not a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from abm_ml.errors import AbmInputError
from abm_ml.modeling import metrics as m
from abm_ml.modeling.ranking import ABM_TIERS, NURTURE
from abm_ml.schema import ACCOUNT_ID, AMOUNT, CLOSED_AT, CREATED_AT, OUTCOME, WON

TIER_ORDER = (*ABM_TIERS, NURTURE)
REASON_COLUMNS = ("top_reasons", "risk")


@dataclass
class Backtest:
    """A backtest of one scoring run."""

    as_of: str
    model_version: str
    outcomes_to: str
    accounts: int
    won_accounts: int
    won_revenue: float
    roc_auc: float
    brier: float
    mean_propensity: float
    win_rate: float
    tiers: pd.DataFrame
    deciles: pd.DataFrame
    false_negatives: pd.DataFrame
    note: str = ""
    unscored_won_accounts: int = 0
    extra: dict = field(default_factory=dict)

    def capture_lines(self) -> list[str]:
        """ "Tier 1:1 held X % of won revenue" for each worked tier."""
        lines = []
        for row in self.tiers.itertuples():
            if row.abm_tier == NURTURE:
                continue
            lines.append(
                f"Tier {row.abm_tier} ({row.accounts:,} accounts) held "
                f"{row.share_of_won_revenue:.1%} of won revenue and "
                f"{row.share_of_won_accounts:.1%} of won accounts."
            )
        return lines

    def formatted(self) -> dict[str, pd.DataFrame]:
        """The three tables with rates as percentages and amounts rounded, for pages and terminals."""

        def shown(frame: pd.DataFrame) -> pd.DataFrame:
            out = frame.copy()
            for column in out.columns:
                if column.startswith(("win_rate", "share_", "mean_issued")):
                    out[column] = out[column].map(lambda v: "-" if pd.isna(v) else f"{v:.1%}")
                elif column.endswith("revenue"):
                    out[column] = out[column].map(lambda v: f"{v:,.0f}")
            return out

        return {
            "tiers": shown(self.tiers),
            "deciles": shown(self.deciles),
            "false_negatives": shown(self.false_negatives),
        }

    def to_dict(self) -> dict:
        def records(frame: pd.DataFrame) -> list[dict]:
            return json_records(frame)

        return {
            "as_of": self.as_of,
            "model_version": self.model_version,
            "outcomes_to": self.outcomes_to,
            "accounts": self.accounts,
            "won_accounts": self.won_accounts,
            "won_revenue": self.won_revenue,
            "unscored_won_accounts": self.unscored_won_accounts,
            "roc_auc": _finite(self.roc_auc),
            "brier": _finite(self.brier),
            "mean_propensity": _finite(self.mean_propensity),
            "win_rate": _finite(self.win_rate),
            "capacity_capture": self.capture_lines(),
            "tiers": records(self.tiers),
            "deciles": records(self.deciles),
            "false_negatives": records(self.false_negatives),
            "note": self.note,
        }


def _finite(value: float) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def json_records(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON-safe dicts (NaN as None, numpy scalars as Python numbers)."""
    plain = frame.astype(object).where(frame.notna(), None)
    return [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        for row in plain.to_dict(orient="records")
    ]


def select_run(history: pd.DataFrame, since: str, model_version: str | None = None) -> pd.DataFrame:
    """The first scoring run on or after ``since`` (of ``model_version`` when given).

    Two versions scoring the same date (a champion and a challenger): the one stored last,
    unless ``model_version`` says which.

    Raises:
        AbmInputError: no stored run matches.
    """
    since_date = str(pd.Timestamp(since).date())
    runs = history[history["as_of"] >= since_date]
    if model_version is not None:
        runs = runs[runs["model_version"].astype(str) == str(model_version)]
    if runs.empty:
        which = f" by model version {model_version}" if model_version else ""
        raise AbmInputError(
            f"no ranking run{which} as of {since_date} or later in the score history",
            field="--since",
        )
    first = runs[runs["as_of"] == runs["as_of"].min()]
    latest = first.sort_values("run_at").iloc[-1]["model_version"]
    return first[first["model_version"] == latest].reset_index(drop=True)


@dataclass
class Outcomes:
    """What a later export says happened after a run's date."""

    per_account: pd.DataFrame
    """One row per account that won a deal: ``account_id``, ``won_revenue``, ``won_deals``, ``won``."""
    outcomes_to: str
    """The export's last date: the end of the window."""
    won_deals_without_account: int = 0
    """Won deals with no account id: they cannot be matched to a scored account."""
    source: str = "outcomes"
    """The export's name, for messages."""


def account_outcomes(deals: pd.DataFrame, as_of: str, *, source: str = "outcomes") -> Outcomes:
    """Per account, what happened after ``as_of``: won (0/1), won revenue, won deals.

    Args:
        deals: the outcome export's rows as the spec reads them (``account_id``,
            ``outcome``, ``closed_at`` or ``created_at``, optionally ``amount``).
        as_of: the scores' date; deals that closed (or were created) on or before it are
            the past the scores already knew.
        source: the export's name, for messages.

    Raises:
        AbmInputError: the export has no account ids or no dates to place its deals in time.
    """
    if ACCOUNT_ID not in deals.columns or deals[ACCOUNT_ID].isna().all():
        raise AbmInputError(
            "the outcomes need an account id (`account_id:` in the spec) to be matched to "
            "the scored accounts",
            source=source,
            field="account_id",
        )
    when = None
    for column in (CLOSED_AT, CREATED_AT):
        if column in deals.columns and deals[column].notna().any():
            # A won deal with a close date is placed by it; one without, by its creation.
            when = deals[column] if when is None else when.fillna(deals[column])
    if when is None:
        raise AbmInputError(
            "the outcomes have no dates (`closed_at:` or `created_at:` in the spec): "
            "nothing says which deals came after the scores",
            source=source,
            field="closed_at",
        )
    cutoff = pd.Timestamp(as_of)
    won = deals[(deals[OUTCOME] == WON) & (pd.to_datetime(when) > cutoff)]
    without_account = won[ACCOUNT_ID].isna() | (won[ACCOUNT_ID].astype("string").str.strip() == "")
    won = won[~without_account.fillna(True)]
    amount = (
        pd.to_numeric(won[AMOUNT], errors="coerce").fillna(0.0)
        if AMOUNT in won.columns
        else pd.Series(0.0, index=won.index)
    )
    per_account = (
        pd.DataFrame({ACCOUNT_ID: won[ACCOUNT_ID].astype(str), "amount": amount})
        .groupby(ACCOUNT_ID)["amount"]
        .agg(won_revenue="sum", won_deals="size")
        .reset_index()
    )
    per_account["won"] = 1
    return Outcomes(
        per_account,
        outcomes_to=str(pd.to_datetime(when).max().date()),
        # Won deals without an account cannot be matched to a scored account: counted, not hidden.
        won_deals_without_account=int(without_account.sum()),
        source=source,
    )


def _group_table(frame: pd.DataFrame, key: str, order: list) -> pd.DataFrame:
    totals = frame["won_revenue"].sum(), frame["won"].sum()
    grouped = frame.groupby(key, sort=False).agg(
        accounts=("won", "size"),
        won_accounts=("won", "sum"),
        won_revenue=("won_revenue", "sum"),
        mean_issued_propensity=("propensity", "mean"),
    )
    grouped = grouped.reindex([o for o in order if o in grouped.index]).reset_index()
    grouped["win_rate"] = grouped["won_accounts"] / grouped["accounts"]
    grouped["share_of_won_revenue"] = grouped["won_revenue"] / totals[0] if totals[0] else np.nan
    grouped["share_of_won_accounts"] = grouped["won_accounts"] / totals[1] if totals[1] else np.nan
    return grouped[
        [
            key,
            "accounts",
            "won_accounts",
            "win_rate",
            "mean_issued_propensity",
            "won_revenue",
            "share_of_won_revenue",
            "share_of_won_accounts",
        ]
    ]


def run_backtest(
    run: pd.DataFrame,
    outcomes: Outcomes,
    *,
    reasons: pd.DataFrame | None = None,
    review: int = 50,
) -> Backtest:
    """Join one scoring run (score-history rows) with the accounts' outcomes after it.

    Args:
        run: one run of the score history (:func:`select_run`).
        outcomes: :func:`account_outcomes` of a later export.
        reasons: the run's ranking file (``account_id`` with ``top_reasons`` / ``risk``), to
            show why the missed accounts were scored low; None leaves the reasons out.
        review: won accounts of the bottom tier listed for review, largest won revenue first.
    """
    as_of, version = str(run["as_of"].iloc[0]), str(run["model_version"].iloc[0])
    frame = run[[ACCOUNT_ID, "rank", "abm_tier", "score", "propensity"]].copy()
    frame[ACCOUNT_ID] = frame[ACCOUNT_ID].astype(str)
    frame = frame.merge(outcomes.per_account, on=ACCOUNT_ID, how="left")
    frame["won"] = frame["won"].fillna(0).astype(int)
    frame["won_revenue"] = frame["won_revenue"].fillna(0.0)
    frame["won_deals"] = frame["won_deals"].fillna(0).astype(int)
    frame["abm_tier"] = frame["abm_tier"].fillna(NURTURE)
    order = frame["rank"].rank(method="first") if frame["rank"].notna().all() else None
    if order is None:
        order = frame["propensity"].rank(method="first", ascending=False)
    frame["decile"] = (np.floor((order.to_numpy() - 1) * 10 / len(frame)) + 1).astype(int)

    y, p = frame["won"].to_numpy(), frame["propensity"].to_numpy(dtype=float)
    metrics = m.propensity_metrics(y, p, n_boot=0) if 0 < y.sum() < len(y) else {}
    false_negatives = frame[(frame["won"] == 1) & (frame["abm_tier"] == NURTURE)]
    false_negatives = false_negatives.sort_values(
        ["won_revenue", "score"], ascending=[False, True]
    ).head(review)
    columns = [ACCOUNT_ID, "rank", "abm_tier", "score", "won_deals", "won_revenue"]
    if reasons is not None and ACCOUNT_ID in reasons.columns:
        kept = [c for c in REASON_COLUMNS if c in reasons.columns]
        lookup = reasons[[ACCOUNT_ID, *kept]].astype({ACCOUNT_ID: str})
        false_negatives = false_negatives.merge(
            lookup.drop_duplicates(ACCOUNT_ID), on=ACCOUNT_ID, how="left"
        )
        columns += kept
    scored = set(frame[ACCOUNT_ID])
    unscored = int((~outcomes.per_account[ACCOUNT_ID].isin(scored)).sum())
    if unscored and unscored == len(outcomes.per_account):
        # Not one won account among the scored ones: the two files name accounts differently
        # (a CRM id prefix, another id column), and every figure below would be a made-up zero.
        raise AbmInputError(
            f"none of the {unscored:,} accounts that won a deal after {as_of} is among the "
            f"{len(frame):,} accounts scored that day: the account ids differ (for example "
            f"{outcomes.per_account[ACCOUNT_ID].iloc[0]!r} in the outcomes, "
            f"{frame[ACCOUNT_ID].iloc[0]!r} in the scores)",
            source=outcomes.source,
            field="account_id",
        )
    note = (
        "A won account is one with a deal won after the scores were issued, up to the "
        "export's last date. Issued propensities are per deal at its creation, so compare "
        "them with the realised rates as a ranking, not as a promise."
    )
    if unscored:
        note += f" {unscored:,} accounts won a deal without being in this run (not counted)."
    if outcomes.won_deals_without_account:
        note += (
            f" {outcomes.won_deals_without_account:,} won deals have no account id and could "
            "not be matched."
        )
    return Backtest(
        as_of=as_of,
        model_version=version,
        outcomes_to=outcomes.outcomes_to,
        accounts=len(frame),
        won_accounts=int(y.sum()),
        won_revenue=float(frame["won_revenue"].sum()),
        roc_auc=metrics["roc_auc"].value if metrics else float("nan"),
        brier=metrics["brier"].value if metrics else float("nan"),
        mean_propensity=float(np.mean(p)),
        win_rate=float(np.mean(y)),
        tiers=_group_table(frame, "abm_tier", list(TIER_ORDER)),
        deciles=_group_table(frame, "decile", list(range(1, 11))),
        false_negatives=false_negatives[columns].reset_index(drop=True),
        note=note,
        unscored_won_accounts=unscored,
    )
