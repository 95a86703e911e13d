"""The drift reference of a model version: what its training rows looked like.

Training computes it from the rows the forest was fitted on and logs it with the
model (``extra_files/drift_reference.json`` inside the model's artifacts, so the
predictor gets it with the download it makes anyway, and the last-known-good cache
keeps it) and as a run artifact of the same name (for people browsing the run).

Per feature: quantile bin edges of the training values and the share of training
rows in each bin; and the share of each class among the training labels. A bin is
``(edges[i-1], edges[i]]``, the first and the last open-ended: the convention of a
Prometheus histogram's ``le``, and :func:`bin_index` of serving uses the same one
(``searchsorted(..., side="left")``), so training and serving count a value on an
edge into the same bin.

numpy only: the serving process imports this module.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mlops_model.schema import CLASS_NAMES, FEATURE_NAMES

SCHEMA_VERSION = 1
KIND = "mlops.drift_reference"
DRIFT_REFERENCE_FILE = "drift_reference.json"
# Where MLflow puts a file passed to log_model(extra_files=...) inside the model directory.
MODEL_EXTRA_FILES_DIR = "extra_files"
DEFAULT_BINS = 10
# Every bin is a label value of three series per version: bound the cardinality a
# hand-written reference can cause.
MAX_BINS = 32
# Edges are rounded to this many decimals (cm: a micrometre): stable, short bin labels.
EDGE_DECIMALS = 4
_SHARE_TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class FeatureBins:
    """Bin edges of one feature (strictly increasing) and the training share per bin."""

    name: str
    edges: tuple[float, ...]
    shares: tuple[float, ...]  # len(edges) + 1

    @property
    def labels(self) -> tuple[str, ...]:
        """The ``bin`` label of each bin: its upper edge, ``+Inf`` for the last."""
        return bin_labels(self.edges)


@dataclass(frozen=True, slots=True)
class DriftReference:
    """A validated drift reference; ``features`` in ``schema.FEATURE_NAMES`` order."""

    features: tuple[FeatureBins, ...]
    class_shares: tuple[float, ...]  # in schema.CLASS_NAMES order
    n_rows: int

    @classmethod
    def from_dict(cls, doc: Any) -> DriftReference:
        """Check a parsed ``drift_reference.json``; ``ValueError`` says what is wrong."""
        if not isinstance(doc, Mapping):
            raise ValueError("not a JSON object")
        if doc.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"schema {doc.get('schema')!r}; this predictor reads {SCHEMA_VERSION}")
        features = doc.get("features")
        if not isinstance(features, list):
            raise ValueError("features is not a list")
        names = tuple(f.get("name") if isinstance(f, Mapping) else None for f in features)
        if names != FEATURE_NAMES:
            raise ValueError(f"features {list(names)}, expected {list(FEATURE_NAMES)}")
        parsed = []
        for feature in features:
            name = str(feature["name"])
            edges = _numbers(feature.get("edges"), f"{name}.edges")
            if not edges or len(edges) + 1 > MAX_BINS:
                raise ValueError(f"{name}: 1 to {MAX_BINS - 1} edges, got {len(edges)}")
            if any(b <= a for a, b in itertools.pairwise(edges)):
                raise ValueError(f"{name}: edges are not strictly increasing")
            shares = _shares(feature.get("shares"), len(edges) + 1, f"{name}.shares")
            parsed.append(FeatureBins(name, edges, shares))
        classes = doc.get("classes")
        if not isinstance(classes, Mapping) or tuple(classes.get("labels", ())) != CLASS_NAMES:
            raise ValueError(f"classes.labels must be {list(CLASS_NAMES)}")
        class_shares = _shares(classes.get("shares"), len(CLASS_NAMES), "classes.shares")
        n_rows = doc.get("n_rows")
        if isinstance(n_rows, bool) or not isinstance(n_rows, int) or n_rows < 1:
            raise ValueError(f"n_rows must be a positive integer, got {n_rows!r}")
        return cls(tuple(parsed), class_shares, n_rows)


def _numbers(value: Any, what: str) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise ValueError(f"{what} is not a list")
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise ValueError(f"{what}: {item!r} is not a number")
        if not math.isfinite(item):
            raise ValueError(f"{what}: {item!r} is not finite")
        out.append(float(item))
    return tuple(out)


def _shares(value: Any, length: int, what: str) -> tuple[float, ...]:
    shares = _numbers(value, what)
    if len(shares) != length:
        raise ValueError(f"{what}: {len(shares)} values, expected {length}")
    if any(s < 0 for s in shares) or abs(sum(shares) - 1.0) > _SHARE_TOLERANCE:
        raise ValueError(f"{what}: shares must be >= 0 and add up to 1")
    return shares


def bin_labels(edges: Sequence[float]) -> tuple[str, ...]:
    # repr is the shortest text that reads back to the same float: distinct edges
    # give distinct labels, and they read like a histogram's le ("5.35").
    return (*(repr(float(e)) for e in edges), "+Inf")


def bin_index(edges: NDArray[np.float64], values: NDArray[np.float64]) -> NDArray[np.intp]:
    """Bin of each value: ``i`` with ``edges[i-1] < value <= edges[i]``."""
    return np.searchsorted(edges, values, side="left")


def _counted_shares(index: NDArray[np.intp], n_bins: int) -> list[float]:
    counts = np.bincount(index, minlength=n_bins)
    return [float(c) / float(len(index)) for c in counts.tolist()]


def compute_reference(
    x: NDArray[np.float64], y: NDArray[np.int64], n_bins: int = DEFAULT_BINS
) -> dict[str, Any]:
    """The reference of training rows ``x`` (columns in FEATURE_NAMES order) and labels ``y``.

    Edges are the inner quantiles of each feature (``n_bins - 1`` of them); Iris
    repeats values a lot, so equal quantiles merge and a feature may get fewer,
    uneven bins: the shares say how many training rows each really holds.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != len(FEATURE_NAMES) or len(x) != len(y) or not len(y):
        raise ValueError(f"expected (n, {len(FEATURE_NAMES)}) rows and n labels, n > 0")
    if y.min() < 0 or y.max() >= len(CLASS_NAMES):
        raise ValueError(f"labels must be class indices 0..{len(CLASS_NAMES) - 1}")
    if not 2 <= n_bins <= MAX_BINS:
        raise ValueError(f"n_bins must be 2..{MAX_BINS}, got {n_bins}")
    probabilities = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    features = []
    for j, name in enumerate(FEATURE_NAMES):
        column = x[:, j]
        edges = np.unique(np.round(np.quantile(column, probabilities), EDGE_DECIMALS))
        features.append(
            {
                "name": name,
                "edges": edges.tolist(),
                "shares": _counted_shares(bin_index(edges, column), len(edges) + 1),
            }
        )
    return {
        "schema": SCHEMA_VERSION,
        "kind": KIND,
        "n_rows": len(y),
        "features": features,
        "classes": {
            "labels": list(CLASS_NAMES),
            "shares": _counted_shares(y.astype(np.intp), len(CLASS_NAMES)),
        },
    }
