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

Drift (``predictor_drift_*``, unless ``PREDICTOR_DRIFT_METRICS`` is off): the rows
served, per feature, counted into the bins of the served version's drift reference
(:mod:`mlops_model.drift`), and the predicted classes, both labelled with the
version; the reference shares of that version as gauges beside them. Prometheus
then computes the population stability index from the scrape alone (the
prometheus role's drift rules), with no copy of the reference of its own. The bin
counts ride on the same buffer and flush as the feature histograms.

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

from mlops_model.drift import DriftReference
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
DRIFT_FEATURE_ROWS = "predictor_drift_feature_rows"
DRIFT_CLASS_ROWS = "predictor_drift_class_rows"
DRIFT_REFERENCE_SHARE = "predictor_drift_reference_share"
DRIFT_REFERENCE_CLASS_SHARE = "predictor_drift_reference_class_share"
# A reference share no worker serves any more. Shares are >= 0 (0 is a real value:
# an empty training bin), so a retired series gets this value and /metrics drops it,
# as it drops a model_info series at 0.
RETIRED = -1.0
_RETIRED_GAUGES = frozenset({DRIFT_REFERENCE_SHARE, DRIFT_REFERENCE_CLASS_SHARE})


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _WithoutRetiredModels(Collector):
    """Drops the series of versions no worker serves: ``predictor_model_info`` at 0 and
    drift reference shares at :data:`RETIRED`."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        for family in self._source.collect():
            if family.name == MODEL_INFO:
                family.samples = [s for s in family.samples if s.value != 0]
            elif family.name in _RETIRED_GAUGES:
                family.samples = [s for s in family.samples if s.value != RETIRED]
            yield family


class _DriftBins:
    """The drift counters of one served version and its increments not written yet.

    Bins follow mlops_model.drift: bin ``i`` holds ``edges[i-1] < v <= edges[i]``.
    """

    def __init__(self, metrics: Metrics, version: str, reference: DriftReference) -> None:
        assert metrics.drift_feature_rows is not None
        assert metrics.drift_class_rows is not None
        self.version = version
        self.reference = reference
        self.edges = [np.array(f.edges, dtype=np.float64) for f in reference.features]
        self.edge_lists = [list(f.edges) for f in reference.features]
        self.bin_children = [
            [metrics.drift_feature_rows.labels(f.name, label, version) for label in f.labels]
            for f in reference.features
        ]
        self.class_children = [metrics.drift_class_rows.labels(c, version) for c in CLASS_NAMES]
        # Every bin exists from the start: a bin nobody hits must count as a 0 share
        # in the index, not be missing from the sum.
        for child in (*(c for row in self.bin_children for c in row), *self.class_children):
            child.inc(0)
        self.hits = [[0] * len(row) for row in self.bin_children]
        self.classes = [0] * len(CLASS_NAMES)
        self.rows = 0

    def take(self) -> tuple[list[list[int]], list[int]] | None:
        """The pending increments, reset; call with the metrics' pending lock held."""
        if not self.rows:
            return None
        taken = (self.hits, self.classes)
        self.hits = [[0] * len(row) for row in self.hits]
        self.classes = [0] * len(CLASS_NAMES)
        self.rows = 0
        return taken

    def write(self, taken: tuple[list[list[int]], list[int]] | None) -> None:
        if taken is None:
            return
        hits, classes = taken
        for children, row_hits in zip(self.bin_children, hits, strict=True):
            for child, count in zip(children, row_hits, strict=True):
                if count:
                    child.inc(count)
        for child, count in zip(self.class_children, classes, strict=True):
            if count:
                child.inc(count)


class Metrics:
    """The predictor's metric objects, registered in a registry of their own."""

    def __init__(self, drift: bool = True) -> None:
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
        self.drift_enabled = drift
        self.drift_feature_rows: Counter | None = None
        self.drift_class_rows: Counter | None = None
        self.drift_reference_share: Gauge | None = None
        self.drift_reference_class_share: Gauge | None = None
        if drift:
            self._drift_metrics(r)
        # The bins of the version served now; None without drift metrics or reference.
        self._drift: _DriftBins | None = None
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

    def _drift_metrics(self, r: CollectorRegistry) -> None:
        # The bin label is the bin's upper edge ("5.35", "+Inf"), like a histogram's
        # le but not cumulative: readable in a dashboard or an alert without the
        # reference at hand, and no more series than an index (the edges are fixed
        # per version, and the version is a label).
        self.drift_feature_rows = Counter(
            DRIFT_FEATURE_ROWS,
            "Served rows by feature and bin of the served version's drift reference "
            "(bin: upper edge of (previous edge, edge]).",
            ["feature", "bin", "version"],
            registry=r,
        )
        self.drift_class_rows = Counter(
            DRIFT_CLASS_ROWS,
            "Served rows by predicted class and model version (prediction drift).",
            ["class", "version"],
            registry=r,
        )
        # livemax: every worker serving a version sets the same shares; a version no
        # live worker serves any more is RETIRED (dropped from /metrics), so the rules
        # always compare with the reference of the version served now.
        self.drift_reference_share = Gauge(
            DRIFT_REFERENCE_SHARE,
            "Share of the training rows of the served version in each bin of a feature.",
            ["feature", "bin", "version"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.drift_reference_class_share = Gauge(
            DRIFT_REFERENCE_CLASS_SHARE,
            "Share of each class among the training labels of the served version.",
            ["class", "version"],
            multiprocess_mode="livemax",
            registry=r,
        )

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
        # Rows are counted into the bins of the version served when they are counted:
        # a request in flight during a swap may land a few rows in the new version's
        # bins, which no window-long index notices.
        n = len(class_index)
        classes: list[int] = []
        counts: list[int] = []
        if n <= _SMALL_BATCH:
            # A few rows (the common request): plain Python. Each numpy call costs a
            # microsecond or more on tiny arrays, more than the bookkeeping itself.
            classes = class_index.tolist()
            for c in classes:
                self._class_children[c].inc()
        else:
            counts = np.bincount(class_index, minlength=len(CLASS_NAMES)).tolist()
            for counter, count in zip(self._class_children, counts, strict=True):
                if count:
                    counter.inc(count)
        if not self._bulk:  # pragma: no cover - only if prometheus_client changes its internals
            clipped = np.clip(x, -_FEATURE_SUM_CLIP, _FEATURE_SUM_CLIP)
            for j, child in enumerate(self._feature_children):
                for value in clipped[:, j].tolist():
                    child.observe(value)
            return
        if n <= _SMALL_BATCH:
            self._buffer_few(x.tolist(), classes)
        else:
            self._buffer_many(x, counts)
        if self._flusher_pid != os.getpid():
            self._start_flusher()

    def _buffer_few(self, rows: list[list[float]], classes: list[int]) -> None:
        bounds, top = self._feature_bound_list, _FEATURE_SUM_CLIP
        hits, sums = self._pending_hits, self._pending_sums
        bisect_left = bisect.bisect_left
        with self._pending_lock:
            drift = self._drift
            for row in rows:
                for j, value in enumerate(row):
                    v = top if value > top else -top if value < -top else value
                    sums[j] += v
                    hits[j][bisect_left(bounds, v)] += 1  # first bucket with v <= le
            self._pending_rows += len(rows)
            if drift is not None:
                edges, drift_hits = drift.edge_lists, drift.hits
                for row in rows:
                    for j, value in enumerate(row):
                        drift_hits[j][bisect_left(edges[j], value)] += 1
                for c in classes:
                    drift.classes[c] += 1
                drift.rows += len(rows)

    def _buffer_many(self, x: FloatArray, class_counts: list[int]) -> None:
        clipped = np.clip(x, -_FEATURE_SUM_CLIP, _FEATURE_SUM_CLIP)
        bounds = self._feature_bounds
        per_feature = [
            np.bincount(np.searchsorted(bounds, clipped[:, j], side="left"), minlength=len(bounds))
            for j in range(clipped.shape[1])
        ]
        totals = clipped.sum(axis=0).tolist()
        drift = self._drift  # binned outside the lock; added only if still the one served
        per_bin = (
            None
            if drift is None
            else [
                np.bincount(
                    np.searchsorted(edges, x[:, j], side="left"), minlength=len(edges) + 1
                ).tolist()
                for j, edges in enumerate(drift.edges)
            ]
        )
        with self._pending_lock:
            for j, per_bucket in enumerate(per_feature):
                row_hits = self._pending_hits[j]
                for i in np.flatnonzero(per_bucket).tolist():
                    row_hits[i] += int(per_bucket[i])
                self._pending_sums[j] += totals[j]
            self._pending_rows += clipped.shape[0]
            if drift is not None and per_bin is not None and drift is self._drift:
                for row_hits, feature_bins in zip(drift.hits, per_bin, strict=True):
                    for i, count in enumerate(feature_bins):
                        row_hits[i] += count
                for c, count in enumerate(class_counts):
                    drift.classes[c] += count
                drift.rows += clipped.shape[0]

    def flush_features(self) -> None:
        """Write the buffered input-feature observations into the histograms."""
        with self._pending_lock:
            drift = self._drift
            drift_taken = drift.take() if drift is not None else None
            if not self._pending_rows:
                hits: list[list[int]] = []
                sums: list[float] = []
            else:
                hits, sums = self._pending_hits, self._pending_sums
                self._pending_hits = [[0] * len(row) for row in hits]
                self._pending_sums = [0.0] * len(sums)
                self._pending_rows = 0
        if drift is not None:
            drift.write(drift_taken)
        if not hits:
            return
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
        if self.drift_enabled:
            self._serve_drift(model)

    def _serve_drift(self, model: LoadedModel) -> None:
        """Move the drift counters to the bins of ``model`` (none without a reference)."""
        reference = model.drift_reference
        bins = None if reference is None else _DriftBins(self, model.version, reference)
        with self._pending_lock:
            old, self._drift = self._drift, bins
            taken = old.take() if old is not None else None
        if old is not None:
            old.write(taken)  # counted while it was served: its own version
            if old.version != model.version:
                self._set_reference(old, retired=True)
        if bins is not None:
            self._set_reference(bins, retired=False)

    def _set_reference(self, bins: _DriftBins, *, retired: bool) -> None:
        assert self.drift_reference_share is not None
        assert self.drift_reference_class_share is not None
        reference, version = bins.reference, bins.version
        for feature in reference.features:
            for label, share in zip(feature.labels, feature.shares, strict=True):
                gauge = self.drift_reference_share.labels(feature.name, label, version)
                gauge.set(RETIRED if retired else share)
        for name, share in zip(CLASS_NAMES, reference.class_shares, strict=True):
            gauge = self.drift_reference_class_share.labels(name, version)
            gauge.set(RETIRED if retired else share)

    def drift_status(self, model: LoadedModel) -> dict[str, Any]:
        """What ``/model`` says about drift metrics for ``model``."""
        reference = model.drift_reference
        status: dict[str, Any] = {
            "metrics": self.drift_enabled and reference is not None,
            "reference": reference is not None,
            "reason": None,
        }
        if reference is None:
            status["reason"] = model.drift_missing or "no drift reference"
        elif not self.drift_enabled:
            status["reason"] = "drift metrics are off (PREDICTOR_DRIFT_METRICS=false)"
        if reference is not None:
            status["training_rows"] = reference.n_rows
            status["bins"] = {f.name: list(f.labels) for f in reference.features}
        return status

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
