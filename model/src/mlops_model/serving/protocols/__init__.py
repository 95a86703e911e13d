"""The wire protocols the predictor speaks besides its own ``/predict``.

* :mod:`.mlflow_scoring`: MLflow's scoring server (``/ping``, ``/version``,
  ``/invocations``), a drop-in for ``mlflow models serve``;
* :mod:`.v2`: the Open Inference Protocol V2 over REST (KServe, Triton, MLServer);
* :mod:`.routing`: which protocol and metric endpoint label a request path has.

Each module turns a request body into the one validated float64 ``(n, 4)`` feature
array (:mod:`mlops_model.serving.validation` rules) and the model's answer back into
its protocol's body; the app (:mod:`mlops_model.serving.app`) serves all of them
from the same model holder, limits and metrics.
"""
