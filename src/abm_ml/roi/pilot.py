"""A pilot with a control group: pick accounts from the current ranking, then measure the lift.

:func:`select_pilot` takes the ``2 N`` best-ranked accounts of the latest ranking run in the
score history and cuts them, in rank order, into score strata of ``stratum_size`` neighbours
(pairs by default: a matched-pair design). Within each stratum a seeded shuffle sends half the
accounts to the pilot arm (worked by the ABM team) and half to the control arm (left to the
usual marketing), so the arms have the same scores by construction and differ only by chance
and by the pilot itself.

:func:`record_pilot` stores the assignment next to the score history, in its own table
(:data:`PILOT_TABLE`), so the pilot's accounts, arms, strata and seed stay with the ranking they
came from. :func:`pilot_report` later compares the arms on what the CRM shows since the pilot
started: engagement, opportunity creation, wins, win rate, velocity and revenue, each with a
bootstrap interval of the difference (:mod:`abm_ml.roi.stats`). It refuses to conclude when
the arms are too small for the difference observed, and says how many accounts would be needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from abm_ml.errors import AbmInputError
from abm_ml.modeling.bootstrap import Metric
from abm_ml.reporting import history
from abm_ml.roi.stats import N_BOOT, accounts_needed, compare, fisher_p_value
from abm_ml.roi.tables import OCCURRED_AT, RESPONDED, TOUCHED_AT
from abm_ml.schema import ACCOUNT_ID, AMOUNT, CLOSED_AT, CREATED_AT, OUTCOME, WON

PILOT_TABLE = "abm_pilot_assignment"
PILOT, CONTROL = "pilot", "control"
MIN_ARM_ACCOUNTS = 20
"""Below this many accounts per arm no conclusion is drawn, whatever the interval says."""
MIN_LIFT = 0.10
"""Smallest lift in opportunity creation (10 points) a 'no lift' conclusion must be able to see."""
PILOT_COLUMNS = (
    "pilot_id",
    "account_id",
    "arm",
    "stratum",
    "rank",
    "score",
    "propensity",
    "model_version",
    "ranking_as_of",
    "started_on",
    "seed",
    "created_at",
)


def _pilot_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        PILOT_TABLE,
        metadata,
        sa.Column("pilot_id", sa.String(64), primary_key=True),
        sa.Column("account_id", sa.String(255), primary_key=True),
        sa.Column("arm", sa.String(8), nullable=False),
        sa.Column("stratum", sa.Integer, nullable=False),
        sa.Column("rank", sa.Integer),
        sa.Column("score", sa.Integer),
        sa.Column("propensity", sa.Float),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("ranking_as_of", sa.String(10), nullable=False),
        sa.Column("started_on", sa.String(10), nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
    )


@dataclass
class Pilot:
    """One pilot: who is in which arm, from which ranking, since when.

    Attributes:
        pilot_id: Name of the pilot.
        started_on: First day the pilot arm is worked (``YYYY-MM-DD``).
        model_version: Model version of the ranking the accounts came from.
        ranking_as_of: As-of date of that ranking.
        seed: Seed of the randomisation.
        assignment: ``account_id, arm, stratum, rank, score, propensity``.
    """

    pilot_id: str
    started_on: str
    model_version: str
    ranking_as_of: str
    seed: int
    assignment: pd.DataFrame

    def balance(self) -> dict[str, dict[str, float]]:
        """Accounts and mean score / propensity per arm: the check that the arms are matched."""
        groups = self.assignment.groupby("arm")
        out = {}
        for arm in (PILOT, CONTROL):
            rows = groups.get_group(arm) if arm in groups.groups else self.assignment.iloc[:0]
            out[arm] = {
                "accounts": len(rows),
                "mean_score": _mean(rows["score"]),
                "mean_propensity": _mean(rows["propensity"]),
            }
        return out


def _mean(values: pd.Series) -> float:
    values = pd.to_numeric(values, errors="coerce").dropna()
    return float(values.mean()) if len(values) else math.nan


def latest_ranking(url: str, model_version: str | None = None) -> pd.DataFrame:
    """The latest ranking run in the score history (of ``model_version`` when given), best first.

    Raises:
        AbmInputError: No history, or no run of that model version.
    """
    shown = history.safe_url(url)
    engine = history._engine(url, writing=False)  # same URL checks and messages as the history
    table = history._table(sa.MetaData())
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table(history.TABLE_NAME):
                raise AbmInputError(
                    "no ranking has been recorded here: run `abm-ml rank` with --history first",
                    source=shown,
                )
            latest = sa.select(table.c.model_version, table.c.as_of, table.c.run_at)
            if model_version is not None:
                latest = latest.where(table.c.model_version == str(model_version))
            run = connection.execute(
                latest.order_by(table.c.as_of.desc(), table.c.run_at.desc()).limit(1)
            ).first()
            if run is None:
                raise AbmInputError(
                    f"no ranking of model version {model_version} in the history",
                    source=shown,
                    field="model_version",
                )
            rows = connection.execute(
                sa.select(
                    table.c.account_id,
                    table.c.model_version,
                    table.c.as_of,
                    table.c.rank,
                    table.c.score,
                    table.c.propensity,
                ).where(table.c.model_version == run[0], table.c.as_of == run[1])
            ).all()
    except sa.exc.SQLAlchemyError as error:
        raise AbmInputError(
            f"cannot read the score history ({error.__class__.__name__})", source=shown
        ) from None
    finally:
        engine.dispose()
    frame = pd.DataFrame(
        rows, columns=["account_id", "model_version", "as_of", "rank", "score", "propensity"]
    )
    # Rank when stored, else score: a run without ranks is still an order.
    return frame.sort_values(
        ["rank", "score", "account_id"],
        ascending=[True, False, True],
        na_position="last",
        kind="stable",
    ).reset_index(drop=True)


def select_pilot(
    ranking: pd.DataFrame,
    n_accounts: int,
    *,
    seed: int = 7,
    stratum_size: int = 2,
    pilot_id: str | None = None,
    started_on: str | None = None,
) -> Pilot:
    """Pilot and control arms of ``n_accounts`` each, randomised within score strata.

    Args:
        ranking: Accounts best first (as :func:`latest_ranking` returns them).
        n_accounts: Accounts in the pilot arm (the control arm gets as many).
        seed: Seed of the shuffle within each stratum.
        stratum_size: Neighbouring accounts (in rank order) per stratum, an even number; 2
            makes matched pairs.
        pilot_id: Name of the pilot (default ``pilot-<started_on>-<seed>``).
        started_on: First day of the pilot (default today, UTC).

    Raises:
        AbmInputError: Fewer than ``2 * n_accounts`` ranked accounts, or bad sizes.
    """
    if n_accounts < 1:
        raise AbmInputError("the pilot needs at least one account", field="--accounts")
    if stratum_size < 2 or stratum_size % 2:
        raise AbmInputError(
            "a stratum holds an even number (>= 2) of accounts", field="--stratum-size"
        )
    if len(ranking) < 2 * n_accounts:
        raise AbmInputError(
            f"the ranking holds {len(ranking)} accounts; a pilot of {n_accounts} and a control "
            f"group of as many need {2 * n_accounts}",
            field="--accounts",
        )
    chosen = ranking.head(2 * n_accounts).reset_index(drop=True)
    rng = np.random.default_rng(seed)
    stratum = np.arange(len(chosen)) // stratum_size
    arm = np.empty(len(chosen), dtype=object)
    for s in np.unique(stratum):
        members = np.flatnonzero(stratum == s)
        shuffled = rng.permutation(members)
        # 2N accounts cut into even-sized strata: the last one is even too, so halves are exact.
        half = len(members) // 2
        arm[shuffled[:half]] = PILOT
        arm[shuffled[half:]] = CONTROL
    try:
        started = str(pd.Timestamp(started_on or pd.Timestamp.now(tz="UTC")).date())
    except ValueError:
        raise AbmInputError(f"not a date: {started_on!r}", field="--start") from None
    assignment = pd.DataFrame(
        {
            ACCOUNT_ID: chosen[ACCOUNT_ID].astype(str),
            "arm": arm,
            "stratum": stratum,
            "rank": chosen.get("rank"),
            "score": chosen.get("score"),
            "propensity": chosen.get("propensity"),
        }
    )
    return Pilot(
        pilot_id=pilot_id or f"pilot-{started}-{seed}",
        started_on=started,
        model_version=str(chosen["model_version"].iloc[0]) if "model_version" in chosen else "",
        ranking_as_of=str(chosen["as_of"].iloc[0]) if "as_of" in chosen else "",
        seed=seed,
        assignment=assignment,
    )


def record_pilot(pilot: Pilot, url: str, *, create_sqlite_folder: bool = False) -> None:
    """Store the pilot's assignment in :data:`PILOT_TABLE` of the score history database.

    Raises:
        AbmInputError: The database cannot be written, or a pilot of that name exists already.
    """
    shown = history.safe_url(url)
    metadata = sa.MetaData()
    table = _pilot_table(metadata)
    engine = history._engine(url, writing=True, create_sqlite_folder=create_sqlite_folder)
    created_at = pd.Timestamp.now(tz="UTC").strftime(history.RUN_AT_FORMAT)
    frame = pilot.assignment
    rows = [
        {
            "pilot_id": pilot.pilot_id,
            "account_id": str(r.account_id),
            "arm": r.arm,
            "stratum": int(r.stratum),
            "rank": None if pd.isna(r.rank) else int(r.rank),
            "score": None if pd.isna(r.score) else int(r.score),
            "propensity": None if pd.isna(r.propensity) else float(r.propensity),
            "model_version": pilot.model_version,
            "ranking_as_of": pilot.ranking_as_of,
            "started_on": pilot.started_on,
            "seed": int(pilot.seed),
            "created_at": created_at,
        }
        for r in frame.itertuples(index=False)
    ]
    try:
        metadata.create_all(engine, checkfirst=True)
        with engine.begin() as connection:
            exists = connection.execute(
                sa.select(sa.func.count()).where(table.c.pilot_id == pilot.pilot_id)
            ).scalar()
            if exists:
                raise AbmInputError(
                    f"a pilot named {pilot.pilot_id!r} exists already; choose another --name",
                    source=shown,
                    field="pilot_id",
                )
            connection.execute(table.insert(), rows)
    except AbmInputError:
        raise
    except sa.exc.SQLAlchemyError as error:
        raise AbmInputError(
            f"cannot write the pilot ({history._scrub(getattr(error, 'orig', None) or error, url)})",
            source=shown,
        ) from None
    finally:
        engine.dispose()


def load_pilot(url: str, pilot_id: str | None = None) -> Pilot:
    """A stored pilot (the latest one when ``pilot_id`` is None).

    Raises:
        AbmInputError: No pilot table, or no such pilot.
    """
    shown = history.safe_url(url)
    engine = history._engine(url, writing=False)
    table = _pilot_table(sa.MetaData())
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table(PILOT_TABLE):
                raise AbmInputError(
                    "no pilot has been recorded here: run `abm-ml pilot --accounts N` first",
                    source=shown,
                )
            if pilot_id is None:
                pilot_id = connection.execute(
                    sa.select(table.c.pilot_id).order_by(table.c.created_at.desc()).limit(1)
                ).scalar()
            rows = connection.execute(
                sa.select(*(table.c[c] for c in PILOT_COLUMNS)).where(table.c.pilot_id == pilot_id)
            ).all()
    except sa.exc.SQLAlchemyError as error:
        raise AbmInputError(
            f"cannot read the pilots ({error.__class__.__name__})", source=shown
        ) from None
    finally:
        engine.dispose()
    if not rows:
        raise AbmInputError(f"no pilot named {pilot_id!r}", source=shown, field="pilot_id")
    frame = pd.DataFrame(rows, columns=list(PILOT_COLUMNS))
    first = frame.iloc[0]
    return Pilot(
        pilot_id=str(first["pilot_id"]),
        started_on=str(first["started_on"]),
        model_version=str(first["model_version"]),
        ranking_as_of=str(first["ranking_as_of"]),
        seed=int(first["seed"]),
        assignment=frame[["account_id", "arm", "stratum", "rank", "score", "propensity"]]
        .sort_values(["stratum", "account_id"])
        .reset_index(drop=True),
    )


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------

METRIC_LABELS = {
    "engaged": "accounts engaged",
    "opened_opportunity": "accounts that opened an opportunity",
    "won_deal": "accounts with a won deal",
    "revenue_per_account": "won revenue per account",
    "win_rate": "win rate of closed deals",
    "median_days_to_close": "median days to close (won deals)",
}


@dataclass
class PilotReport:
    """Pilot vs control since the pilot started, and whether that supports a conclusion.

    Attributes:
        pilot: The pilot compared.
        period: ``start`` and ``end`` (as-of) of the outcomes counted.
        metrics: Per metric, the pilot arm's, the control arm's value and the difference
            (pilot minus control), each a :class:`Metric` with a 95 % interval.
        p_value: Fisher exact test of equal opportunity-creation rates.
        needed_for_observed: Accounts per arm needed to detect the observed difference in
            opportunity creation (two-sided 5 %, 80 % power); None when there is no difference.
        needed_for_min_lift: Accounts per arm needed to detect a lift of ``min_lift``.
        verdict: ``lift``, ``harm``, ``no_lift`` or ``too_few``.
        message: The verdict in one or two sentences.
        notes: Caveats.
    """

    pilot: Pilot
    period: dict[str, str]
    metrics: dict[str, dict[str, Metric]]
    p_value: float
    needed_for_observed: int | None
    needed_for_min_lift: int | None
    min_lift: float
    verdict: str
    message: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""

        def metric(m: Metric) -> dict[str, float | None]:
            return {k: None if math.isnan(v) else v for k, v in m.to_dict().items()}

        return {
            "kind": "abm-ml pilot report",
            "pilot_id": self.pilot.pilot_id,
            "model_version": self.pilot.model_version,
            "ranking_as_of": self.pilot.ranking_as_of,
            "seed": self.pilot.seed,
            "period": self.period,
            "balance": {
                arm: {
                    k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()
                }
                for arm, row in self.pilot.balance().items()
            },
            "metrics": {
                name: {part: metric(value) for part, value in parts.items()}
                for name, parts in self.metrics.items()
            },
            "metric_labels": METRIC_LABELS,
            "opportunity_creation_p_value": None if math.isnan(self.p_value) else self.p_value,
            "accounts_needed_per_arm": {
                "for_observed_difference": self.needed_for_observed,
                "for_min_lift": self.needed_for_min_lift,
                "min_lift": self.min_lift,
            },
            "verdict": self.verdict,
            "message": self.message,
            "notes": self.notes,
        }


def _verdict(
    n_per_arm: int,
    difference: Metric,
    needed_observed: int | None,
    needed_min: int | None,
    min_lift: float,
) -> tuple[str, str]:
    observed = f"{difference.value * 100:+.1f} points [{difference.low * 100:+.1f}, {difference.high * 100:+.1f}]"

    def too_few(extra: str) -> tuple[str, str]:
        need = needed_observed if needed_observed is not None else needed_min
        return "too_few", (
            f"Too few accounts to conclude ({n_per_arm} per arm): opportunity creation differs by "
            f"{observed}. About {need:,} accounts per arm would be needed to detect "
            f"{'the observed difference' if needed_observed is not None else f'a lift of {min_lift * 100:.0f} points'} "
            f"(two-sided 5 %, 80 % power){extra}."
        )

    if n_per_arm < MIN_ARM_ACCOUNTS:
        return too_few(f"; no conclusion is drawn below {MIN_ARM_ACCOUNTS} accounts per arm")
    if difference.low > 0:
        return "lift", f"The pilot lifted opportunity creation by {observed}."
    if difference.high < 0:
        return "harm", f"The pilot arm opened fewer opportunities than the control arm: {observed}."
    if needed_min is not None and n_per_arm >= needed_min:
        return "no_lift", (
            f"No lift: opportunity creation differs by {observed}, and with {n_per_arm} accounts "
            f"per arm a lift of {min_lift * 100:.0f} points would have been seen 80 % of the time."
        )
    return too_few("")


def pilot_report(
    pilot: Pilot,
    opportunities: pd.DataFrame,
    touches: pd.DataFrame | None = None,
    activities: pd.DataFrame | None = None,
    *,
    as_of: str | pd.Timestamp | None = None,
    min_lift: float = MIN_LIFT,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> PilotReport:
    """Compare the pilot and control arms on outcomes since the pilot started.

    Args:
        pilot: The stored pilot.
        opportunities: Validated opportunities (:func:`abm_ml.roi.tables.read_opportunities`);
            those of accounts outside the pilot are ignored.
        touches: Validated touches, for engagement when no activities are given (optional).
        activities: Validated CRM activities (:func:`abm_ml.roi.tables.read_activities`): an
            account with an activity in the period is engaged (optional).
        as_of: End of the period (default: the latest date in the tables).
        min_lift: Smallest lift in opportunity creation a "no lift" verdict must be powered for.
        n_boot: Bootstrap resamples.
        seed: Bootstrap seed.
    """
    start = pd.Timestamp(pilot.started_on)
    dates = [opportunities[CREATED_AT].max(), opportunities[CLOSED_AT].max()]
    if touches is not None and len(touches):
        dates.append(touches[TOUCHED_AT].max())
    end = pd.Timestamp(as_of) if as_of is not None else max(d for d in dates if pd.notna(d))
    if end < start:
        raise AbmInputError(
            f"the period ends ({end.date()}) before the pilot started ({start.date()})",
            field="--as-of",
        )
    arms = pilot.assignment.set_index(ACCOUNT_ID)["arm"]
    ids = arms.index
    treated = (arms == PILOT).to_numpy()
    opps = opportunities[
        opportunities[ACCOUNT_ID].isin(ids) & opportunities[CREATED_AT].between(start, end)
    ]
    closed = opps[opps[CLOSED_AT].notna() & (opps[CLOSED_AT] <= end)]
    won = closed[closed[OUTCOME] == WON]
    per_account = pd.DataFrame(index=ids)
    per_account["opened_opportunity"] = ids.isin(opps[ACCOUNT_ID]).astype(float)
    per_account["won_deal"] = ids.isin(won[ACCOUNT_ID]).astype(float)
    per_account["revenue_per_account"] = (
        won.groupby(ACCOUNT_ID)[AMOUNT].sum().reindex(ids, fill_value=0.0)
    )
    notes = []
    metrics: dict[str, dict[str, Metric]] = {}
    names = ["opened_opportunity", "won_deal", "revenue_per_account"]
    if activities is not None:
        inside = activities[activities[OCCURRED_AT].between(start, end)]
        per_account["engaged"] = ids.isin(inside[ACCOUNT_ID]).astype(float)
        names.insert(0, "engaged")
        notes.append("Engaged: the account has a CRM activity (any channel) in the period.")
    elif touches is not None and touches[RESPONDED].notna().all():
        inside = touches[touches[ACCOUNT_ID].isin(ids) & touches[TOUCHED_AT].between(start, end)]
        per_account["engaged"] = ids.isin(
            inside.loc[inside[RESPONDED].astype(bool), ACCOUNT_ID]
        ).astype(float)
        names.insert(0, "engaged")
        notes.append("Engaged: the account responded to a touch in the period.")
    else:
        notes.append(
            "Engagement is not compared: give activities, or touches with a `responded` column."
        )
    for i, name in enumerate(names):
        result = compare(per_account[name].to_numpy(), treated, n_boot=n_boot, seed=seed + i)
        metrics[name] = {
            "pilot": result["treated"],
            "control": result["untreated"],
            "difference": result["difference"],
        }
    deal_arm = closed[ACCOUNT_ID].map(arms).eq(PILOT).to_numpy()
    rate = compare(
        (closed[OUTCOME] == WON).to_numpy(dtype=float), deal_arm, n_boot=n_boot, seed=seed + 10
    )
    metrics["win_rate"] = {
        "pilot": rate["treated"],
        "control": rate["untreated"],
        "difference": rate["difference"],
    }
    days = (won[CLOSED_AT] - won[CREATED_AT]).dt.days.to_numpy(dtype=float)
    speed = compare(
        days,
        won[ACCOUNT_ID].map(arms).eq(PILOT).to_numpy(),
        "median",
        n_boot=n_boot,
        seed=seed + 11,
    )
    metrics["median_days_to_close"] = {
        "pilot": speed["treated"],
        "control": speed["untreated"],
        "difference": speed["difference"],
    }
    if len(won) < 2 * MIN_ARM_ACCOUNTS:
        notes.append(f"Only {len(won)} won deals so far: win rate and velocity are early readings.")

    opened = per_account["opened_opportunity"]
    n_pilot, n_control = int(treated.sum()), int((~treated).sum())
    hits_pilot, hits_control = int(opened[treated].sum()), int(opened[~treated].sum())
    rate_pilot = hits_pilot / n_pilot if n_pilot else math.nan
    rate_control = hits_control / n_control if n_control else math.nan
    needed_observed = accounts_needed(rate_control, rate_pilot) if n_pilot and n_control else None
    needed_min = (
        accounts_needed(rate_control, min(rate_control + min_lift, 1.0)) if n_control else None
    )
    verdict, message = _verdict(
        min(n_pilot, n_control),
        metrics["opened_opportunity"]["difference"],
        needed_observed,
        needed_min,
        min_lift,
    )
    return PilotReport(
        pilot=pilot,
        period={"start": str(start.date()), "end": str(end.date())},
        metrics=metrics,
        p_value=fisher_p_value(hits_pilot, n_pilot, hits_control, n_control),
        needed_for_observed=needed_observed,
        needed_for_min_lift=needed_min,
        min_lift=min_lift,
        verdict=verdict,
        message=message,
        notes=notes,
    )
