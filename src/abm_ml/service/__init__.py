"""The BentoML scoring service for CRM integrations: ``/score``, ``/rank``, ``/explain``, ``/metadata``.

One module per part, in the order a request meets them:

- :mod:`~abm_ml.service.settings`: limits, access and process layout from ``ABM_ML_*`` variables.
- :mod:`~abm_ml.service.auth`: the optional bearer token.
- :mod:`~abm_ml.service.contract`: one account record built from the model's features, request
  parsing and validation (400/413/422 naming the record and field), the scorer's input frame.
- :mod:`~abm_ml.service.handlers`: calling the scorer, ranking with :mod:`abm_ml.modeling.ranking`,
  building each response.
- :mod:`~abm_ml.service.responses`: the response models every body is built from, and the
  OpenAPI documentation generated from them.
- :mod:`~abm_ml.service.deploy`: a registered MLflow version into the BentoML model store, with
  its lineage; reading it back.
- :mod:`~abm_ml.service.launch`: ``abm-ml serve`` (``bentoml serve`` on the installed package).
- :mod:`~abm_ml.service.bento`: the BentoML service declarations, which ``bentoml serve`` imports.

Importing any of them but :mod:`~abm_ml.service.bento` configures nothing, creates nothing and
reads no store; :mod:`~abm_ml.service.bento` loads the Bento model named by ``ABM_ML_BENTO_MODEL``.
"""
