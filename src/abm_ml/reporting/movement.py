"""Wording of an account's movement since its previous entry in the score history.

Movement compares each account with its *previous entry*: its latest row ordered by
``(as_of, run_at)`` that comes before this run, whatever the model version, never the row
this run is writing. The text in ``movement`` follows these rules, parts joined by ", ":

* no previous entry: ``"new"``;
* the score: ``"score +18"``, ``"score -5"`` or ``"score unchanged"``;
* the ABM tier, when it changed: ``"entered tier 1:1"`` when the account moved up (towards 1:1),
  ``"left tier 1:few"`` (the tier it had) when it moved down; a tier outside the known order
  reads ``"tier A → B"``;
* the rank, only when the ABM tier is the same named tier (not nurture) and the rank changed:
  ``"rank 12 → 5"``. Ranks in nurture move every week and mean little, so they are left out.
"""

from __future__ import annotations

from abm_ml.modeling.ranking import ABM_TIERS, NURTURE

TIER_ORDER = {name: position for position, name in enumerate((*ABM_TIERS, NURTURE))}
"""Position of each tier, 1:1 first: a smaller position is a move up."""


def movement_text(
    score: float | None,
    previous_score: float | None,
    abm_tier: str | None,
    previous_abm_tier: str | None,
    rank: int | None,
    previous_rank: int | None,
    seen: bool,
) -> str:
    """One account's movement since its previous entry (rules in the module docstring).

    Args:
        score: This run's score; None when unknown.
        previous_score: The previous entry's score; None when unknown.
        abm_tier: This run's ABM tier.
        previous_abm_tier: The previous entry's ABM tier.
        rank: This run's rank.
        previous_rank: The previous entry's rank.
        seen: Whether the account has a previous entry at all.

    Returns:
        For example ``"new"``, ``"score +18, entered tier 1:1"`` or ``"score unchanged, rank 12 → 5"``.
    """
    if not seen:
        return "new"
    parts = []
    # Plain None checks (not pd.isna): this runs once per account, 100k times a run.
    if score is not None and previous_score is not None:
        delta = round(float(score) - float(previous_score))
        parts.append(f"score {delta:+d}" if delta else "score unchanged")
    if abm_tier != previous_abm_tier:
        now, before = TIER_ORDER.get(abm_tier), TIER_ORDER.get(previous_abm_tier)
        if now is None or before is None:
            parts.append(f"tier {previous_abm_tier} → {abm_tier}")
        elif now < before:
            parts.append(f"entered tier {abm_tier}")
        else:
            parts.append(f"left tier {previous_abm_tier}")
    elif (
        abm_tier in ABM_TIERS
        and rank is not None
        and previous_rank is not None
        and int(rank) != int(previous_rank)
    ):
        parts.append(f"rank {int(previous_rank)} → {int(rank)}")
    return ", ".join(parts) or "no change"
