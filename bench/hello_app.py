"""The ceiling of the benchmark: a Flask hello-world that does no model work.

It reads the request body and answers a small constant JSON document, under
exactly the predictor's gunicorn settings (see ``hello_gunicorn_conf.py``).
"""

from __future__ import annotations

from flask import Flask, Response, request

app = Flask("hello")
_BODY = b'{"predictions":["setosa"]}'


@app.post("/predict")
def predict() -> Response:
    request.get_data(cache=False)
    return Response(_BODY, status=200, mimetype="application/json")


@app.get("/ready")
def ready() -> Response:
    return Response(b'{"status":"ready"}', status=200, mimetype="application/json")
