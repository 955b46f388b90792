"""Modeling: the packaged scorer, how it is trained, explained and evaluated.

- :mod:`~abm_ml.modeling.feature_info`: the feature contract a scorer carries.
- :mod:`~abm_ml.modeling.scorer`: :class:`AccountScorer`, the one scoring code path (CLI,
  service, evaluation), with its preprocessing, calibrator and velocity model.
- :mod:`~abm_ml.modeling.reasons`: TreeSHAP contributions turned into reasons.
- :mod:`~abm_ml.modeling.boosting`, :mod:`~abm_ml.modeling.velocity`,
  :mod:`~abm_ml.modeling.baselines`, :mod:`~abm_ml.modeling.train`: fitting the propensity
  and deal-velocity models, the baselines, and packaging them.
- :mod:`~abm_ml.modeling.evaluate`: :func:`evaluate_scorer`, the one evaluation (training,
  ``abm-ml evaluate``, promotion).
- :mod:`~abm_ml.modeling.metrics` on :mod:`~abm_ml.modeling.bootstrap`: metrics with
  bootstrap intervals and the table of which direction is better.
- :mod:`~abm_ml.modeling.ranking`: the one ranker (tiers, filters, priorities).
"""
