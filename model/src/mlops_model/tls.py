"""TLS to an MLflow tracking server, set the way MLflow's own client is set.

MLflow's client reads ``MLFLOW_TRACKING_SERVER_CERT_PATH`` (the CA bundle that
verifies the server), ``MLFLOW_TRACKING_CLIENT_CERT_PATH`` (a client
certificate) and ``MLFLOW_TRACKING_INSECURE_TLS``. The requests this package
makes with the standard library (the reachability check before training, the
predictors' alias lookups and downloads) read the same variables, so one
setting covers every request to the server.
"""

from __future__ import annotations

import os
import ssl


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def tracking_tls_context(url: str) -> ssl.SSLContext | None:
    """The context for a request to ``url``: None for plain HTTP, else one that
    verifies the server (against MLFLOW_TRACKING_SERVER_CERT_PATH when set, the
    system's CAs otherwise), host name included, unless the operator asked for
    MLFLOW_TRACKING_INSECURE_TLS."""
    if not url.startswith("https:"):
        return None
    if _env_true("MLFLOW_TRACKING_INSECURE_TLS"):
        return ssl._create_unverified_context()  # noqa: S323 - the operator asked for it
    context = ssl.create_default_context(
        cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None
    )
    client_cert = os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH")
    if client_cert:
        context.load_cert_chain(client_cert)
    return context
