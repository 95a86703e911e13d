"""Conversion of a scikit-learn model to an ONNX graph with skl2onnx (imported when called)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlops_model.schema import FEATURE_NAMES
from mlops_model.serving.sklearn_backend import SklearnBackend

# skl2onnx target: ai.onnx.ml 3 is the first TreeEnsembleClassifier with double
# thresholds and weights (``*_as_tensor``), which the double input of
# :class:`~mlops_model.serving.onnx_backend.OnnxBackend` needs; the default domain at
# 21 is within what skl2onnx 1.20 tests (22) and every onnxruntime >= 1.20 runs.
TARGET_OPSET: dict[str, int] = {"": 21, "ai.onnx.ml": 3}


def convert_to_onnx(backend: SklearnBackend) -> bytes:
    """The model as a serialized ONNX graph (skl2onnx); raises what the converter raises."""
    from skl2onnx import to_onnx  # type: ignore[import-untyped,unused-ignore]

    estimator = backend.estimator
    no_zipmap = {"zipmap": False}  # probabilities as a plain (n, classes) tensor
    options: dict[int, dict[str, Any]] = {id(estimator): no_zipmap}
    steps = getattr(estimator, "steps", None)
    if steps:  # a Pipeline: the option belongs to its final classifier
        options[id(steps[-1][1])] = no_zipmap
    sample = np.zeros((1, len(FEATURE_NAMES)), dtype=np.float64)
    onx = to_onnx(estimator, sample, options=options, target_opset=TARGET_OPSET)
    data: bytes = onx.SerializeToString()
    return data
