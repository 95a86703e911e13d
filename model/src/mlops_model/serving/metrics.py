"""Prometheus metrics of the predictor, correct with one process or many gunicorn workers.

With ``PROMETHEUS_MULTIPROC_DIR`` set (it must be set before prometheus_client is
imported, i.e. in the environment of the gunicorn master) every worker writes its
values to files there and ``/metrics`` merges them: counters and histograms sum
over all workers (dead ones included, so totals never drop), and gauges use the
mode documented on each. The gunicorn config cleans the directory when the
master starts and marks dead workers (``child_exit``).

Per request, the counters and the duration histogram are written at once (in
multiprocess mode every write is a store into an mmap'd file, about a microsecond
each). The input-feature histograms (``predictor_feature_value``, eight writes per
row) are summed in process memory and written at most
:data:`FEATURE_FLUSH_INTERVAL` seconds later by a background thread, before this
process renders ``/metrics``, and when the service stops: another worker's
``/metrics`` may show them up to that interval late, which drift monitoring does
not notice. That halves the metrics cost of a one-row request.

The metric names are a contract with the alert rules and the Grafana dashboards.
"""

from __future__ import annotations

import atexit
import bisect
import os
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from mlops_model.schema import CLASS_NAMES, FEATURE_NAMES
from mlops_model.serving.holder import FloatArray, LoadedModel

# 0.5 ms .. 2 s: a cached forest answers one row in well under a millisecond, a
# 10 000-row batch in tens to hundreds of milliseconds.
DURATION_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0,
)  # fmt: skip
# One shared bucket list for every feature, in cm: 0 .. 8 in steps of 0.5 spans all
# four Iris ranges (0.1 .. 7.9) with room for drift on both sides.
FEATURE_BUCKETS: tuple[float, ...] = tuple(i * 0.5 for i in range(17))
# Feature values enter the histograms' _sum; clip absurd (but finite) inputs so a
# single 1e308 cannot turn the sum into +Inf for the life of the process.
_FEATURE_SUM_CLIP = 1e9

# Up to this many rows per request, prediction metrics are counted in plain Python.
_SMALL_BATCH = 16
# Seconds an input-feature observation may wait in memory before it is written.
FEATURE_FLUSH_INTERVAL = 1.0

MODEL_INFO = "predictor_model_info"
FALLBACK_REASONS: tuple[str, ...] = ("unavailable", "conversion", "parity")


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _WithoutRetiredModels(Collector):
    """Drops ``predictor_model_info`` series whose value is 0 (a model no worker serves)."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        for family in self._source.collect():
            if family.name == MODEL_INFO:
                family.samples = [s for s in family.samples if s.value != 0]
            yield family


class Metrics:
    """The predictor's metric objects, registered in a registry of their own."""

    def __init__(self) -> None:
        self.multiprocess_dir = multiprocess_dir()
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "predictor_requests_total",
            "HTTP requests answered, by endpoint, method and status code.",
            ["endpoint", "method", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "predictor_request_duration_seconds",
            "Time from request start to response, by endpoint and protocol (predictor, "
            "mlflow, v2, other); its _count is the requests per protocol.",
            # protocol is a function of endpoint: no more series, and requests_total
            # keeps the label set that the role's verify step parses
            ["endpoint", "protocol"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "predictor_predictions_total",
            "Predicted rows, by predicted class.",
            ["class"],
            registry=r,
        )
        self.feature_value = Histogram(
            "predictor_feature_value",
            "Input feature values in cm, by feature (input drift).",
            ["feature"],
            buckets=FEATURE_BUCKETS,
            registry=r,
        )
        # livemax: a series is 1 while at least one live worker serves that version;
        # a worker sets its previous version to 0 on a swap, dead workers' files are
        # removed in child_exit, and /metrics drops the 0 series: after a swap only
        # the current version shows.
        self.model_info = Gauge(
            MODEL_INFO,
            "The model version served: 1 for each version a live worker serves.",
            ["name", "version", "alias", "backend"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.reloads = Counter(
            "predictor_model_reloads_total",
            "Model versions loaded, self-checked and swapped in (the first load included).",
            registry=r,
        )
        self.reload_failures = Counter(
            "predictor_model_reload_failures_total",
            "Failed model checks or loads: registry unreachable, alias missing, load or "
            "self-check error. The current model stays.",
            registry=r,
        )
        self.backend_fallbacks = Counter(
            "predictor_backend_fallbacks_total",
            "Model loads served by scikit-learn although ONNX was asked for, by reason: "
            "unavailable (skl2onnx/onnxruntime missing), conversion, parity.",
            ["reason"],
            registry=r,
        )
        self.registry_last_success = Gauge(
            "predictor_registry_last_success_timestamp_seconds",
            "Unix time of the last successful alias lookup in the MLflow registry.",
            multiprocess_mode="max",
            registry=r,
        )
        self.registry_up = Gauge(
            "predictor_registry_up",
            "1 if the last alias lookup reached the MLflow registry (min over live workers).",
            multiprocess_mode="livemin",
            registry=r,
        )
        # Children created once: the hot path neither hashes label tuples nor allocates.
        self._class_children = [self.predictions.labels(c) for c in CLASS_NAMES]
        self._feature_children = [self.feature_value.labels(f) for f in FEATURE_NAMES]
        self._feature_bounds = np.array([*FEATURE_BUCKETS, np.inf])
        self._feature_bound_list: list[float] = self._feature_bounds.tolist()
        self._bulk = all(
            hasattr(c, "_buckets") and hasattr(c, "_sum") for c in self._feature_children
        )
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._served: LoadedModel | None = None
        # Feature histogram increments not written yet: hits[feature][bucket], sums[feature].
        self._pending_lock = threading.Lock()
        self._pending_hits = [[0] * len(self._feature_bound_list) for _ in FEATURE_NAMES]
        self._pending_sums = [0.0] * len(FEATURE_NAMES)
        self._pending_rows = 0
        self._flusher_pid: int | None = None
        self._flusher_stop = threading.Event()
        atexit.register(self.flush_features)  # a worker's graceful exit writes what is left
        self.reloads.inc(0)
        self.reload_failures.inc(0)
        for reason in FALLBACK_REASONS:
            self.backend_fallbacks.labels(reason).inc(0)

    # -- request path ---------------------------------------------------------
    def observe_request(
        self, endpoint: str, method: str, status: int, seconds: float, protocol: str = "predictor"
    ) -> None:
        key = (endpoint, method, status)  # the endpoint decides the protocol
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(endpoint, method, str(status)),
                self.duration.labels(endpoint, protocol),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_prediction(self, x: FloatArray, class_index: np.ndarray[Any, Any]) -> None:
        n = len(class_index)
        if n <= _SMALL_BATCH:
            # A few rows (the common request): plain Python. Each numpy call costs a
            # microsecond or more on tiny arrays, more than the bookkeeping itself.
            for c in class_index.tolist():
                self._class_children[c].inc()
        else:
            counts = np.bincount(class_index, minlength=len(CLASS_NAMES))
            for counter, count in zip(self._class_children, counts.tolist(), strict=True):
                if count:
                    counter.inc(count)
        if not self._bulk:  # pragma: no cover - only if prometheus_client changes its internals
            clipped = np.clip(x, -_FEATURE_SUM_CLIP, _FEATURE_SUM_CLIP)
            for j, child in enumerate(self._feature_children):
                for value in clipped[:, j].tolist():
                    child.observe(value)
            return
        if n <= _SMALL_BATCH:
            self._buffer_few(x.tolist())
        else:
            self._buffer_many(x)
        if self._flusher_pid != os.getpid():
            self._start_flusher()

    def _buffer_few(self, rows: list[list[float]]) -> None:
        bounds, top = self._feature_bound_list, _FEATURE_SUM_CLIP
        hits, sums = self._pending_hits, self._pending_sums
        with self._pending_lock:
            for row in rows:
                for j, value in enumerate(row):
                    v = top if value > top else -top if value < -top else value
                    sums[j] += v
                    hits[j][bisect.bisect_left(bounds, v)] += 1  # first bucket with v <= le
            self._pending_rows += len(rows)

    def _buffer_many(self, x: FloatArray) -> None:
        clipped = np.clip(x, -_FEATURE_SUM_CLIP, _FEATURE_SUM_CLIP)
        bounds = self._feature_bounds
        per_feature = [
            np.bincount(np.searchsorted(bounds, clipped[:, j], side="left"), minlength=len(bounds))
            for j in range(clipped.shape[1])
        ]
        totals = clipped.sum(axis=0).tolist()
        with self._pending_lock:
            for j, per_bucket in enumerate(per_feature):
                row_hits = self._pending_hits[j]
                for i in np.flatnonzero(per_bucket).tolist():
                    row_hits[i] += int(per_bucket[i])
                self._pending_sums[j] += totals[j]
            self._pending_rows += clipped.shape[0]

    def flush_features(self) -> None:
        """Write the buffered input-feature observations into the histograms."""
        with self._pending_lock:
            if not self._pending_rows:
                return
            hits, sums = self._pending_hits, self._pending_sums
            self._pending_hits = [[0] * len(row) for row in hits]
            self._pending_sums = [0.0] * len(sums)
            self._pending_rows = 0
        for child, row_hits, total in zip(self._feature_children, hits, sums, strict=True):
            for i, count in enumerate(row_hits):
                if count:
                    child._buckets[i].inc(float(count))
            child._sum.inc(total)

    def _start_flusher(self) -> None:
        """One flusher thread per process (a forked worker starts its own)."""
        with self._pending_lock:
            if self._flusher_pid == os.getpid():
                return
            self._flusher_pid = os.getpid()
            self._flusher_stop = stop = threading.Event()
        threading.Thread(
            target=self._flush_loop, args=(stop,), name="predictor-metrics-flush", daemon=True
        ).start()

    def _flush_loop(self, stop: threading.Event) -> None:
        while not stop.wait(FEATURE_FLUSH_INTERVAL):
            self.flush_features()

    def close(self) -> None:
        """Stop the flusher thread and write what is buffered."""
        self._flusher_stop.set()
        self._flusher_pid = None
        self.flush_features()

    # -- model and registry state --------------------------------------------
    def model_served(self, model: LoadedModel) -> None:
        previous, self._served = self._served, model
        if previous is not None:
            self._info(previous).set(0)
        self._info(model).set(1)
        fallback = model.backend_fallback
        if fallback is not None:
            self.backend_fallbacks.labels(fallback.reason).inc()

    def _info(self, model: LoadedModel) -> Any:
        return self.model_info.labels(model.name, model.version, model.alias, model.backend_name)

    def registry_checked(self, reachable: bool) -> None:
        self.registry_up.set(1 if reachable else 0)
        if reachable:
            self.registry_last_success.set(time.time())

    # -- exposition -----------------------------------------------------------
    def render(self) -> tuple[bytes, str]:
        """The text exposition for ``/metrics`` and its content type."""
        self.flush_features()
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            source = CollectorRegistry()
            multiprocess.MultiProcessCollector(source, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        else:
            source = self.registry
        out = CollectorRegistry()
        out.register(_WithoutRetiredModels(source))
        return generate_latest(out), CONTENT_TYPE_LATEST


def iter_samples(text: str, name: str) -> Iterator[tuple[dict[str, str], float]]:
    """Samples of one metric in a text exposition (used by tests and the smoke checks)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                yield dict(sample.labels), float(sample.value)
