"""The ceiling of the benchmark: a Flask hello-world that does no model work.

It reads the request body and answers a small constant JSON document, under
exactly the predictor's gunicorn settings (see ``hello_gunicorn_conf.py``).
"""

from __future__ import annotations

from flask import Flask, Response, request

app = Flask("hello")
# the benchmark checks sampled answers against it (bench/serve_bench.py)
ANSWER = b'{"predictions":["setosa"]}'


@app.post("/predict")
def predict() -> Response:
    request.get_data(cache=False)
    return Response(ANSWER, status=200, mimetype="application/json")


@app.get("/ready")
def ready() -> Response:
    return Response(b'{"status":"ready"}', status=200, mimetype="application/json")
