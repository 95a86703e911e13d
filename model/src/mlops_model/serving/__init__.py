"""The predictor: a Flask app under gunicorn serving ``models:/<name>@<alias>``.

``app.create_app(settings.Settings.from_env())`` builds it; ``wsgi:app`` is the
gunicorn entry point and ``gunicorn_conf`` its configuration. Import of this package
stays cheap: it imports nothing, and MLflow, Flask and prometheus_client are imported
by the submodules that need them.
"""
