"""WSGI entry point: ``gunicorn -c python:mlops_model.serving.gunicorn_conf
mlops_model.serving.wsgi:app``. Settings come from the environment (see ``Settings``)."""

from __future__ import annotations

from mlops_model.serving.app import create_app
from mlops_model.serving.registry_client import apply_registry_http_defaults
from mlops_model.serving.settings import Settings

apply_registry_http_defaults()
app = create_app(Settings.from_env())
