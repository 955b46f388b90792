"""How often the "no better than chance" gate lets a model trained on noise through.

For each export the won / lost labels are permuted among the closed deals (open deals, dates
and features stay), so there is nothing to learn and the holdout is noise too. The real
training (:func:`abm_ml.modeling.train.train_models`) then runs once per seed and the bench
counts how often ``result.no_better_than_chance`` is False: a false pass. The gate is a
one-sided 97.5 % bound, so an honest one passes about 2.5 % of noise models.

Exports: the planted CRM export of :mod:`abm_ml.testing` (a fresh export per seed), a small
synthetic world, and, when ``ABM_ML_SHARED_DATASETS`` is set, a row sample of UCI bank.
``--everywhere`` permutes the whole label column (open deals too); ``--clustered`` draws
outcomes from a per-account win rate unrelated to the features (noise correlated within
accounts, as real outcomes are). Each run also records the verdict of the old gate (a
percentile bootstrap of the AUC over rows) on the same holdout, as the in-run reference.

Usage::

    python bench/bench_gate.py                          # 40 seeds per export, small config
    python bench/bench_gate.py --seeds 10 --exports crm
    python bench/bench_gate.py --seeds 30 --exports crm --clustered
    python bench/bench_gate.py --real                   # the gate's verdicts on the real data

Writes ``bench/results/gate.json``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from common import (
    SHARED_SPECS,
    SYNTH_SPEC,
    base_report,
    load_shared_dataset,
    quiet_warnings,
    shared_dataset_missing,
    synthetic_dataset,
    write_result,
)

from abm_ml.data.spec import load_spec
from abm_ml.data.validate import Dataset, load_dataset
from abm_ml.errors import AbmInputError
from abm_ml.modeling.boosting import TrainConfig
from abm_ml.modeling.bootstrap import bootstrap, roc_auc_kernel
from abm_ml.modeling.train import MODEL_NAME, train_models
from abm_ml.schema import ACCOUNT_ID, LOST, OUTCOME, WON
from abm_ml.testing import CRM_SPEC, make_crm_export, small_train_config

NAME = "gate"
BANK = "uci-bank-marketing"


def shuffled(dataset: Dataset, seed: int, everywhere: bool = False) -> Dataset:
    """The dataset with won / lost permuted among its closed deals (nothing left to learn).

    ``everywhere`` permutes the whole label column, open deals included, like shuffling the
    export's stage column before loading it.
    """
    frame = dataset.frame.copy()
    closed = (
        np.ones(len(frame), bool) if everywhere else frame[OUTCOME].isin([WON, LOST]).to_numpy()
    )
    rng = np.random.default_rng(seed)
    frame.loc[closed, OUTCOME] = rng.permutation(frame.loc[closed, OUTCOME].to_numpy())
    return dataclasses.replace(dataset, frame=frame)


def sampled(dataset: Dataset, n: int, seed: int) -> Dataset:
    """``n`` random rows of the dataset, in their original order."""
    if len(dataset.frame) <= n:
        return dataset
    rows = np.sort(np.random.default_rng(seed).choice(len(dataset.frame), n, replace=False))
    return dataclasses.replace(dataset, frame=dataset.frame.iloc[rows].reset_index(drop=True))


def crm_dataset(n: int, seed: int, folder: Path) -> Dataset:
    """The planted CRM export of :mod:`abm_ml.testing`, written and loaded through its spec."""
    make_crm_export(n, seed=seed).to_csv(folder / "opportunities.csv", index=False)
    spec = copy.deepcopy(CRM_SPEC)
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_dataset(load_spec(folder / "spec.yaml"))


def clustered(dataset: Dataset, seed: int, n_accounts: int = 120) -> Dataset:
    """Noise that is correlated within accounts, as real outcomes are.

    Closed deals are spread over ``n_accounts`` accounts; each account gets its own win rate
    (Beta with the dataset's base rate as mean) and its deals are won with that rate, unrelated
    to any feature. No account feature can predict a new account's rate, so the model is
    still no better than chance, but a holdout's deals are no longer independent rows.
    """
    frame = dataset.frame.copy()
    rng = np.random.default_rng(seed)
    closed = frame[OUTCOME].isin([WON, LOST]).to_numpy()
    base = float((frame.loc[closed, OUTCOME] == WON).mean())
    accounts = rng.integers(0, n_accounts, len(frame))
    frame[ACCOUNT_ID] = [f"NOISE{a:04d}" for a in accounts]
    rate = rng.beta(base * 2, (1 - base) * 2, n_accounts)[accounts]
    won = rng.random(len(frame)) < rate
    frame.loc[closed, OUTCOME] = np.where(won[closed], WON, LOST)
    return dataclasses.replace(dataset, frame=frame)


def row_bootstrap_low(y: np.ndarray, p: np.ndarray, n_boot: int, seed: int) -> float:
    """The old gate's bound: a percentile bootstrap of the AUC over rows, for reference."""
    return bootstrap({"roc_auc": roc_auc_kernel(y, p)}, len(y), n_boot, seed)["roc_auc"].low


def run_once(dataset: Dataset, config: TrainConfig) -> dict:
    """Train on the dataset; the gate's verdict, the old row-bootstrap gate's, and the AUC."""
    result = train_models(dataset, config)
    auc = result.propensity[MODEL_NAME]["roc_auc"]
    preds = result.holdout_predictions
    old_low = row_bootstrap_low(
        preds["won"].to_numpy(float), preds[MODEL_NAME].to_numpy(float), config.n_boot, config.seed
    )
    return {
        "passed": not result.no_better_than_chance,
        "passed_row_bootstrap": bool(old_low > 0.5),
        "row_bootstrap_low": old_low,
        "roc_auc": auc.value,
        "low": auc.low,
        "high": auc.high,
        "n_test": len(result.holdout),
        "n_won_test": int(result.holdout_predictions["won"].sum()),
        "choice": result.propensity_choice,
    }


def noise_runs(export: str, seeds: int, config: TrainConfig, args) -> list[dict]:
    """One shuffled-label training per seed on ``export``."""
    runs = []
    base: Dataset | None = None
    if export == "synthetic":
        with synthetic_dataset(args.synth_accounts, seed=11) as data:
            base = data
    elif export == "bank":
        base = sampled(load_shared_dataset(BANK), args.bank_rows, seed=0)
    for seed in range(seeds):
        with tempfile.TemporaryDirectory(prefix="abm-bench-gate-") as tmp:
            data = crm_dataset(args.crm_rows, 1000 + seed, Path(tmp)) if base is None else base
            started = time.perf_counter()
            noise = (
                clustered(data, seed) if args.clustered else shuffled(data, seed, args.everywhere)
            )
            try:
                run = run_once(noise, dataclasses.replace(config, seed=seed))
            except AbmInputError as err:  # e.g. a holdout of accounts that all lost
                print(f"{export:10s} seed {seed:3d}  skipped: {err}", flush=True)
                continue
        run.update(export=export, seed=seed, seconds=time.perf_counter() - started)
        print(
            f"{export:10s} seed {seed:3d}  AUC {run['roc_auc']:.3f} "
            f"[{run['low']:.3f}, {run['high']:.3f}]  n_test {run['n_test']} "
            f"({run['n_won_test']} won)  {'PASS' if run['passed'] else 'chance'}"
            f"  row-bootstrap gate: {'PASS' if run['passed_row_bootstrap'] else 'chance'}",
            flush=True,
        )
        runs.append(run)
    return runs


def real_runs(config: TrainConfig) -> list[dict]:
    """The gate's verdict on the real datasets and the synthetic world (unshuffled)."""
    runs = []
    for name in SHARED_SPECS:
        missing = shared_dataset_missing(name)
        if missing:
            print(f"{name}: skipped ({missing})")
            continue
        run = run_once(load_shared_dataset(name), config)
        run["export"] = name
        runs.append(run)
        print(name, run, flush=True)
    with synthetic_dataset() as data:
        run = run_once(data, config)
    run["export"] = SYNTH_SPEC
    runs.append(run)
    print(SYNTH_SPEC, run, flush=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--exports", default="crm,synthetic,bank")
    parser.add_argument("--crm-rows", type=int, default=600)
    parser.add_argument("--synth-accounts", type=int, default=800)
    parser.add_argument("--bank-rows", type=int, default=2000)
    parser.add_argument("--default-config", action="store_true", help="TrainConfig() defaults")
    parser.add_argument("--everywhere", action="store_true", help="shuffle open deals too")
    parser.add_argument("--clustered", action="store_true", help="account-correlated noise")
    parser.add_argument("--real", action="store_true", help="verdicts on the real datasets")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    quiet_warnings()
    config = TrainConfig() if args.default_config else small_train_config()
    report = base_report(NAME, quick=args.seeds < 40)
    report["config"] = "default" if args.default_config else "small_train_config"
    report["noise"] = (
        "clustered" if args.clustered else "everywhere" if args.everywhere else "closed"
    )
    if args.real:
        report["real"] = real_runs(config)
    else:
        summary = {}
        for export in args.exports.split(","):
            if export == "bank" and shared_dataset_missing(BANK):
                print("bank: skipped (set ABM_ML_SHARED_DATASETS)")
                continue
            runs = noise_runs(export, args.seeds, config, args)
            rate = float(np.mean([r["passed"] for r in runs]))
            old = float(np.mean([r["passed_row_bootstrap"] for r in runs]))
            summary[export] = {"false_pass_rate": rate, "row_bootstrap_rate": old, "runs": runs}
            print(
                f"{export}: false-pass rate {rate:.1%} (row bootstrap {old:.1%}) "
                f"over {len(runs)} seeds",
                flush=True,
            )
        report["exports"] = summary
    write_result(NAME, report, args.out)


if __name__ == "__main__":
    main()
