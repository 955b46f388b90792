"""Entry point MLflow loads for the packaged model ("models from code")."""

from mlflow.models import set_model

from abm_ml.registry.pyfunc import AccountScorerModel

set_model(AccountScorerModel())
