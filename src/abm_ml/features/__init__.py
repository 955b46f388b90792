"""Point-in-time features: each row computed only from what was known before its cut-off.

- :mod:`~abm_ml.features.point_in_time`: ``build_features``, ``build_training_rows`` (as of
  each opportunity's creation) and ``build_scoring_rows`` (as of a date): one code path for both.
- :mod:`~abm_ml.features.columns`: the feature catalogue: names, order, descriptions, templates.
- :mod:`~abm_ml.features.events`: sorted (account, time) event keys and window lookups.
"""
