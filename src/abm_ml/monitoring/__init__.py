"""Looking back at the scores: reference profiles, drift verdicts, backtests and gated retraining.

* :mod:`~abm_ml.monitoring.profile`: what the inputs and scores looked like (training rows,
  scoring runs), stored with the model and after each monitored run.
* :mod:`~abm_ml.monitoring.stats`: PSI and the label-free ROC AUC estimate.
* :mod:`~abm_ml.monitoring.drift` and :mod:`~abm_ml.monitoring.monitor`: a scoring run against
  its reference, and the verdict (exit code 3 when a threshold is crossed).
* :mod:`~abm_ml.monitoring.backtest`: the scores as issued against the outcomes that followed.
* :mod:`~abm_ml.monitoring.retrain`: validate, train, promote only on evidence, score, monitor.
"""
