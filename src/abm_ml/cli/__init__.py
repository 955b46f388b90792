"""The ``abm-ml`` command: synthesize, validate, train, promote, rank, explain, serve.

One module per audience: :mod:`~abm_ml.cli.data` (validate, synth), :mod:`~abm_ml.cli.spec`
(spec init), :mod:`~abm_ml.cli.models`
(train, evaluate, promote, rollback, models), :mod:`~abm_ml.cli.accounts` (rank, explain),
:mod:`~abm_ml.cli.horizon` (train-buy, rank-buy), :mod:`~abm_ml.cli.roi` (roi, pilot),
:mod:`~abm_ml.cli.export` (CRM write-back files), :mod:`~abm_ml.cli.monitoring` (monitor,
backtest, retrain),
:mod:`~abm_ml.cli.service` (deploy, serve) and :mod:`~abm_ml.cli.demo`; the Typer app, its
consoles and the shared options live in :mod:`~abm_ml.cli.app`.

Exit codes: 0 ok; 2 bad input (a spec, a file, a column, a row, a refused promotion), with one
line naming the problem; 3 a monitoring threshold crossed; 1 an internal error (set ABM_ML_DEBUG=1 for the traceback).
"""

# Imported for their commands, in the order --help lists them.
from abm_ml.cli import data, spec, models, accounts, horizon, monitoring, roi, export, service, demo  # noqa: F401, I001
from abm_ml.cli.app import app, main

__all__ = ["app", "main"]
