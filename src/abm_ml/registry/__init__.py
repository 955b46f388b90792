"""Registry: MLflow as the system of record for trained scorers.

- :mod:`~abm_ml.registry.store`: the store's client, versions by alias or number, a version's
  scorer and its training holdout; ``configure()`` for entry points only.
- :mod:`~abm_ml.registry.tracking`: logging a training run and registering a challenger.
- :mod:`~abm_ml.registry.promotion`: champion/challenger promotion on evidence, rollback.
- :mod:`~abm_ml.registry.pyfunc` (+ ``pyfunc_model``): the packaged scorer on disk and its
  MLflow pyfunc wrapper; :func:`read_scorer` is the one loader.
- :mod:`~abm_ml.registry.card`: the model card.

Library functions take an ``MlflowClient`` (from :mod:`abm_ml.config` when omitted) and set
no global state; only entry points call :func:`~abm_ml.registry.store.configure`.
"""
