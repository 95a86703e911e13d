"""The ONNX Runtime backend: a compiled forest (see :mod:`mlops_model.serving.conversion`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlops_model.serving.errors import ModelLoadError
from mlops_model.serving.holder import F32_MAX, BackendFallback, FloatArray

# ONNX Runtime's tree ensemble sums in double and returns float32; rounding its
# answer to 7 decimals removes the float32 noise (0.61, not 0.6100000143051147)
# and stays within 1e-7 of scikit-learn's float64 answer.
PROBABILITY_DECIMALS = 7
_SCALE = np.float64(10**PROBABILITY_DECIMALS)


class OnnxBackend:
    """A compiled model run by ONNX Runtime, one intra-op thread.

    Why one thread: gunicorn runs as many single-threaded workers as there are
    cores, each answering one request at a time. More intra-op threads per session
    would oversubscribe the cores (each worker's pool competing with the other
    workers), cost a thread hand-off on every call that is larger than the work
    itself (about 10 µs for one row through 100 trees), and make the summation
    order over trees depend on how a batch is split, so one row alone and the same
    row inside a batch could differ in the last bits. One thread is deterministic.

    The input goes in as float64 holding float32-rounded values: scikit-learn's
    trees compare ``float32(x)`` with float64 thresholds, and the converted trees
    keep float64 thresholds, so every split decides as in scikit-learn.
    """

    name = "onnx"
    fallback: BackendFallback | None = None

    def __init__(
        self,
        model: bytes,
        feature_order: Sequence[int] | None = None,
        class_order: Sequence[int] | None = None,
    ) -> None:
        import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only: no per-session info lines in the log
        try:
            session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"onnxruntime cannot open the converted model: {exc}") from exc
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(double)":
            raise ModelLoadError(f"unexpected ONNX inputs {[(i.name, i.type) for i in inputs]}")
        probabilities = [o.name for o in outputs if o.name == "probabilities"]
        if not probabilities:
            raise ModelLoadError(f"no 'probabilities' output in {[o.name for o in outputs]}")
        self.session = session
        self._input = inputs[0].name
        self._outputs = probabilities
        self._run = session.run
        self._feature_order = None if feature_order is None else list(feature_order)
        self._class_order = None if class_order is None else list(class_order)

    def predict_proba(self, x: FloatArray) -> FloatArray:
        # Plain ufuncs, not np.clip/np.round: their Python wrappers cost more than
        # the whole tree ensemble on one row.
        x_in = np.minimum(np.maximum(x, -F32_MAX), F32_MAX).astype(np.float32)
        x_in = x_in.astype(np.float64)
        if self._feature_order is not None:
            x_in = np.ascontiguousarray(x_in[:, self._feature_order])
        (proba,) = self._run(self._outputs, {self._input: x_in})
        out: FloatArray = np.rint(proba * _SCALE) / _SCALE  # float32 * float64 -> float64
        if self._class_order is not None:
            out = np.ascontiguousarray(out[:, self._class_order])
        return out
