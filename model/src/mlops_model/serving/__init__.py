"""The predictor: a Flask app under gunicorn serving ``models:/<name>@<alias>``.

``create_app(Settings.from_env())`` builds it; ``wsgi:app`` is the gunicorn entry
point and ``gunicorn_conf`` its configuration. Import of this package stays cheap:
MLflow, Flask and prometheus_client are imported by the submodules that need them.
"""

from __future__ import annotations

from mlops_model.serving.holder import InferenceBackend, LoadedModel, ModelHolder
from mlops_model.serving.settings import Settings

__all__ = ["InferenceBackend", "LoadedModel", "ModelHolder", "Settings"]
