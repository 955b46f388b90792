"""Pages for sales ops at the service root: the ranked accounts, one account, the model.

Server-rendered (Jinja2) with htmx for partial updates, read from the score history
(:mod:`abm_ml.reporting.history`) and the model registry; see :func:`abm_ml.web.app.create_app`.
"""

from __future__ import annotations


def create_app(**kwargs):
    """The pages as an ASGI app (see :func:`abm_ml.web.app.create_app`)."""
    from abm_ml.web.app import create_app as make

    return make(**kwargs)


__all__ = ["create_app"]
