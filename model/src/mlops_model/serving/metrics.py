"""Prometheus metrics of the predictor, correct with one process or many gunicorn workers.

With ``PROMETHEUS_MULTIPROC_DIR`` set (it must be set before prometheus_client is
imported, i.e. in the environment of the gunicorn master) every worker writes its
values to files there and ``/metrics`` merges them: counters and histograms sum
over all workers (dead ones included, so totals never drop), and gauges use the
mode documented on each. The gunicorn config cleans the directory when the
master starts and marks dead workers (``child_exit``).

The metric names are a contract with the alert rules and the Grafana dashboards.
"""

from __future__ import annotations

import os
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

MODEL_INFO = "predictor_model_info"


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
            "Time from request start to response, by endpoint.",
            ["endpoint"],
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
        self._bulk = all(
            hasattr(c, "_buckets") and hasattr(c, "_sum") for c in self._feature_children
        )
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._served: LoadedModel | None = None
        self.reloads.inc(0)
        self.reload_failures.inc(0)

    # -- request path ---------------------------------------------------------
    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        key = (endpoint, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(endpoint, method, str(status)),
                self.duration.labels(endpoint),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_prediction(self, x: FloatArray, class_index: np.ndarray[Any, Any]) -> None:
        counts = np.bincount(class_index, minlength=len(CLASS_NAMES))
        for counter, count in zip(self._class_children, counts.tolist(), strict=True):
            if count:
                counter.inc(count)
        clipped = np.clip(x, -_FEATURE_SUM_CLIP, _FEATURE_SUM_CLIP)
        if self._bulk:
            # Histogram.observe per value would be n*4 Python calls (and mmap writes in
            # multiprocess mode); this does one increment per touched bucket.
            bounds = self._feature_bounds
            for j, child in enumerate(self._feature_children):
                col = clipped[:, j]
                per_bucket = np.bincount(
                    np.searchsorted(bounds, col, side="left"), minlength=len(bounds)
                )
                for i in np.flatnonzero(per_bucket).tolist():
                    child._buckets[i].inc(float(per_bucket[i]))
                child._sum.inc(float(col.sum()))
        else:  # pragma: no cover - only if prometheus_client changes its internals
            for j, child in enumerate(self._feature_children):
                for value in clipped[:, j].tolist():
                    child.observe(value)

    # -- model and registry state --------------------------------------------
    def model_served(self, model: LoadedModel) -> None:
        previous, self._served = self._served, model
        if previous is not None:
            self._info(previous).set(0)
        self._info(model).set(1)

    def _info(self, model: LoadedModel) -> Any:
        return self.model_info.labels(model.name, model.version, model.alias, model.backend_name)

    def registry_checked(self, reachable: bool) -> None:
        self.registry_up.set(1 if reachable else 0)
        if reachable:
            self.registry_last_success.set(time.time())

    # -- exposition -----------------------------------------------------------
    def render(self) -> tuple[bytes, str]:
        """The text exposition for ``/metrics`` and its content type."""
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
