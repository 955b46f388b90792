"""Charts logged with every training run and embedded in the reports (matplotlib, no display).

Our own charts are drawn on :class:`matplotlib.figure.Figure` objects, which need no backend and
leave pyplot's state alone: importing this module does not switch the backend (a notebook keeps
its inline plots). Only the SHAP charts go through pyplot, because shap draws there; pyplot then
picks its backend as usual (Agg on a server without a display) and the figure is closed once saved.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from abm_ml.modeling import metrics as m

COLORS = {"abm-ml": "#1f6feb", "logistic_regression": "#8b949e", "rule_based_fit": "#d29922"}


def _subplots(ncols: int = 1, *, figsize: tuple[float, float]):
    """A figure and its axes, outside pyplot (no backend, nothing to close)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(1, ncols)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _save_pyplot(path: Path) -> Path:
    """Save pyplot's current figure (where shap draws) and close it."""
    import matplotlib.pyplot as plt

    fig = plt.gcf()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def calibration_plot(y: np.ndarray, predictions: dict[str, np.ndarray], path: Path) -> Path:
    fig, ax = _subplots(figsize=(5, 4.2))
    ax.plot([0, 1], [0, 1], ls="--", color="#cccccc", lw=1, label="perfect")
    for name, p in predictions.items():
        pts = m.calibration_curve_points(y, p, n_bins=10)
        ax.errorbar(
            pts["mean_predicted"],
            pts["observed_rate"],
            yerr=np.maximum(
                [
                    pts["observed_rate"] - pts["observed_low"],
                    pts["observed_high"] - pts["observed_rate"],
                ],
                0.0,
            ),
            marker="o",
            ms=3,
            lw=1.2,
            capsize=2,
            label=name,
            color=COLORS.get(name),
        )
    ax.set_xlabel("predicted win probability")
    ax.set_ylabel("observed win rate (test)")
    ax.set_title("Calibration on the holdout")
    ax.legend(fontsize=8)
    return _save(fig, path)


def gains_plot(
    y: np.ndarray, predictions: dict[str, np.ndarray], path: Path, amounts: np.ndarray | None = None
) -> Path:
    fig, ax = _subplots(figsize=(5, 4.2))
    ax.plot([0, 1], [0, 1], ls="--", color="#cccccc", lw=1, label="random")
    for name, p in predictions.items():
        gains = m.cumulative_gains(y, p, amounts)
        ax.plot(
            gains["fraction_worked"],
            gains["fraction_wins"],
            lw=1.5,
            label=name,
            color=COLORS.get(name),
        )
    ax.set_xlabel("share of accounts worked (by score)")
    ax.set_ylabel("share of wins reached")
    ax.set_title("Cumulative gains on the holdout")
    ax.legend(fontsize=8)
    return _save(fig, path)


def velocity_residuals_plot(days_true: np.ndarray, p50: np.ndarray, path: Path) -> Path:
    fig, axes = _subplots(2, figsize=(9, 3.8))
    axes[0].scatter(days_true, p50, s=4, alpha=0.3, color="#1f6feb")
    top = float(np.nanpercentile(np.concatenate([days_true, p50]), 99)) or 1.0
    axes[0].plot([0, top], [0, top], ls="--", color="#999999")
    axes[0].set_xlim(0, top)
    axes[0].set_ylim(0, top)
    axes[0].set_xlabel("actual days to close")
    axes[0].set_ylabel("predicted P50 days")
    axes[1].hist(p50 - days_true, bins=50, color="#8b949e")
    axes[1].set_xlabel("predicted - actual days")
    axes[1].set_title("Velocity residuals (won deals, holdout)")
    return _save(fig, path)


def shap_plots(
    values: np.ndarray, data: pd.DataFrame, base: np.ndarray, directory: Path, *, top: int = 4
) -> list[Path]:
    """Beeswarm summary, mean |SHAP| bar chart and dependence plots of the top features."""
    import matplotlib.pyplot as plt
    import shap

    numeric = data.apply(
        lambda s: s.cat.codes.replace(-1, np.nan) if isinstance(s.dtype, pd.CategoricalDtype) else s
    ).astype(float)
    explanation = shap.Explanation(
        values=values, base_values=base, data=numeric.to_numpy(), feature_names=list(data.columns)
    )
    paths = []
    plt.figure()
    with warnings.catch_warnings():
        # shap colours a feature by its 5th-95th percentiles; a feature blank in every row
        # (validation notes it) has none, and numpy's "All-NaN slice" warning would reach
        # the user's terminal. The feature is drawn grey, as shap draws missing values.
        warnings.filterwarnings("ignore", "All-NaN slice encountered", RuntimeWarning)
        shap.plots.beeswarm(explanation, max_display=15, show=False)
    plt.title("SHAP summary (log-odds contribution per account)")
    paths.append(_save_pyplot(directory / "shap_summary.png"))
    plt.figure()
    shap.plots.bar(explanation, max_display=15, show=False)
    plt.title("Mean |SHAP| (log-odds)")
    paths.append(_save_pyplot(directory / "shap_importance.png"))
    order = np.argsort(-np.abs(values).mean(axis=0))[:top]
    for j in order:
        name = data.columns[j]
        fig, ax = _subplots(figsize=(5, 3.6))
        column = data[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            frame = pd.DataFrame(
                {"value": column.astype(object).fillna("(missing)"), "shap": values[:, j]}
            )
            stats = frame.groupby("value")["shap"].mean().sort_values()
            stats = (
                stats.iloc[np.r_[0 : min(8, len(stats)), max(len(stats) - 8, 8) : len(stats)]]
                if len(stats) > 16
                else stats
            )
            ax.barh([str(i)[:28] for i in stats.index], stats.values, color="#1f6feb")
            ax.set_xlabel("mean SHAP (log-odds)")
        else:
            ax.scatter(column.astype(float), values[:, j], s=4, alpha=0.35, color="#1f6feb")
            ax.set_xlabel(name)
            ax.set_ylabel("SHAP (log-odds)")
        ax.set_title(f"Dependence: {name}")
        paths.append(_save(fig, directory / f"shap_dependence_{name}.png"))
    return paths


def waterfall_plot(
    factors: pd.DataFrame, base_log_odds: float, path: Path, *, title: str, max_display: int = 12
) -> Path:
    """SHAP waterfall of one account: from the base log-odds to its own, factor by factor."""
    import matplotlib.pyplot as plt
    import shap

    labels = [f"{t}" for t in factors["text"]]
    explanation = shap.Explanation(
        values=factors["log_odds"].to_numpy(dtype=float),
        base_values=base_log_odds,
        data=np.array([str(v) if v is not None else "" for v in factors["value"]], dtype=object),
        feature_names=labels,
    )
    plt.figure()
    shap.plots.waterfall(explanation, max_display=max_display, show=False)
    plt.title(title)
    return _save_pyplot(path)


ABM_TIER_COLORS = {"1:1": "#0a3069", "1:few": "#0969da", "1:many": "#54aeff", "nurture": "#8c959f"}


def ranking_overview_plot(ranked: pd.DataFrame, path: Path) -> Path:
    """Expected value by ABM tier (with account counts) and the propensity distribution of a ranking."""
    fig, axes = _subplots(2, figsize=(9, 3.4))
    tiers = [t for t in ABM_TIER_COLORS if "abm_tier" in ranked and (ranked["abm_tier"] == t).any()]
    if tiers:
        value = [
            float(ranked.loc[ranked["abm_tier"] == t, "expected_value"].sum(min_count=1))
            for t in tiers
        ]
        count = [int((ranked["abm_tier"] == t).sum()) for t in tiers]
        has_value = any(np.isfinite(v) for v in value)
        if not has_value:
            # Without deal amounts there is no expected value: the bars count accounts instead.
            value = [float(n) for n in count]
        value = [v if np.isfinite(v) else 0.0 for v in value]
        bars = axes[0].bar(tiers, value, color=[ABM_TIER_COLORS[t] for t in tiers])
        for bar, n in zip(bars, count):
            axes[0].annotate(
                f"{n:,} accounts",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
                xytext=(0, 2),
                textcoords="offset points",
            )
        axes[0].margins(y=0.15)
    axes[0].yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    if tiers and not has_value:
        axes[0].set_ylabel("accounts")
        axes[0].set_title("Accounts by ABM tier (no deal amounts)")
    else:
        axes[0].set_ylabel("expected value (sum)")
        axes[0].set_title("Expected value by ABM tier")
    propensity = (
        ranked["propensity"].to_numpy(dtype=float) if "propensity" in ranked else np.array([])
    )
    axes[1].hist(
        propensity[np.isfinite(propensity)],
        bins=np.linspace(0, 1, 21),
        color="#1f6feb",
        edgecolor="white",
    )
    axes[1].set_xlim(0, 1)
    axes[1].set_xlabel("propensity to buy")
    axes[1].set_ylabel("accounts")
    axes[1].set_title("Propensity distribution")
    for ax in axes:
        ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)
