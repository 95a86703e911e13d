# -*- coding: utf-8 -*-
# Copyright: mlops-stack developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations


class ModuleDocFragment(object):
    # Connection options shared by the MLflow modules of mlops.stack
    DOCUMENTATION = r"""
options:
  tracking_uri:
    description:
      - URI of the MLflow tracking server (and Model Registry), for example
        V(http://127.0.0.1:5004) on the MLflow host itself, where MLflow listens on loopback
        behind the M(mlops.stack.mlflow_server) role's TLS front (loopback never crosses a
        network).
      - If not set, the E(MLFLOW_TRACKING_URI) environment variable of the target is used.
    type: str
    required: true
  tracking_username:
    description:
      - User for MLflow's basic authentication.
      - If not set, the E(MLFLOW_TRACKING_USERNAME) environment variable is used.
    type: str
  tracking_password:
    description:
      - Password for MLflow's basic authentication.
      - If not set, the E(MLFLOW_TRACKING_PASSWORD) environment variable is used.
    type: str
  request_timeout:
    description:
      - Seconds to wait for each HTTP request to MLflow.
    type: int
    default: 10
"""

    # The modules that train and read models through the mlops_model package
    MLOPS_MODEL = r"""
options: {}
requirements:
  - mlflow >= 3.0 (mlflow-skinny is enough)
  - scikit-learn
  - skops
  - mlops-model (the C(model/) package of this repository) in the Python interpreter that runs
    the module
notes:
  - An HTTP(S) tracking server must answer C(GET <tracking_uri>/health) within O(request_timeout)
    seconds, otherwise the module fails with a message naming the URI.
  - MLflow's own retries are limited to one, so an unreachable server fails in seconds rather
    than after minutes of back-off.
  - An C(https://) server's certificate is verified against the CA file in
    E(MLFLOW_TRACKING_SERVER_CERT_PATH) when it is set on the target, else the system's CAs.
"""

    # The modules that talk to MLflow's REST API with Ansible's own HTTP client
    REST = r"""
options: {}
requirements:
  - An MLflow tracking server; nothing but Python's standard library on the target (the module
    does not import C(mlflow)).
notes:
  - Each request goes to the server once (no retries) and fails after O(request_timeout) seconds; an
    HTTP error fails the module with a message naming the URL, the status and MLflow's own message.
"""

    # The modules that move an alias, and so may insist on a version prepared for the fast path
    FAST_PATH = r"""
options:
  require_fast_path:
    description:
      - Refuse to move the alias to a version whose tag C(mlops.fast_path) is not V(passed),
        with a failure naming this option.
      - C(mlops.fast_path=passed) means the version carries an ONNX graph checked when it was
        registered (M(mlops.stack.mlflow_model) prepares every version it registers;
        C(python -m mlops_model prepare --name NAME --version N) prepares others), which the
        predictors load in well under a second instead of converting it themselves.
      - With V(false) an unprepared version still serves; the predictors convert it at load.
    type: bool
    default: false
"""
