"""Training and evaluation of the Iris RandomForest, and the training fingerprint."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier  # type: ignore[import-untyped,unused-ignore]
from sklearn.metrics import (  # type: ignore[import-untyped,unused-ignore]
    accuracy_score,
    confusion_matrix,
    f1_score,
)

from mlops_model import __version__
from mlops_model.data import Split, dataset_digest, holdout_split, n_samples
from mlops_model.drift import compute_reference
from mlops_model.errors import InvalidParameter
from mlops_model.schema import CLASS_NAMES

ALGORITHM = "sklearn.ensemble.RandomForestClassifier"
MAX_ESTIMATORS = 5000
MAX_SEED = 2**32 - 1  # numpy's RandomState accepts seeds in [0, 2**32 - 1]
MAX_TEST_SIZE = 0.9


def _require_int(name: str, value: object) -> int:
    # bool is an int subclass; True as a tree count is a caller bug, not 1
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(name, f"{name} must be an integer, got {value!r}")
    return value


def _require_range(name: str, value: int, low: int, high: int | None = None) -> None:
    if value < low:
        raise InvalidParameter(name, f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise InvalidParameter(name, f"{name} must be <= {high}, got {value}")


@dataclass(frozen=True)
class TrainParams:
    """Hyper-parameters and split of one training; validated on construction."""

    n_estimators: int = 100
    max_depth: int | None = None
    min_samples_leaf: int = 1
    random_state: int = 42
    test_size: float = 0.2

    def __post_init__(self) -> None:
        _require_range(
            "n_estimators", _require_int("n_estimators", self.n_estimators), 1, MAX_ESTIMATORS
        )
        if self.max_depth is not None:
            _require_range("max_depth", _require_int("max_depth", self.max_depth), 1)
        _require_range(
            "min_samples_leaf", _require_int("min_samples_leaf", self.min_samples_leaf), 1
        )
        _require_range("random_state", _require_int("random_state", self.random_state), 0, MAX_SEED)
        size = self.test_size
        if isinstance(size, bool) or not isinstance(size, int | float) or not math.isfinite(size):
            raise InvalidParameter("test_size", f"test_size must be a number, got {size!r}")
        if not 0.0 < size < MAX_TEST_SIZE:
            raise InvalidParameter(
                "test_size", f"test_size must be > 0 and < {MAX_TEST_SIZE}, got {size}"
            )
        # a stratified holdout needs at least one sample of every class on each side
        n_test = math.ceil(size * n_samples())
        if n_test < len(CLASS_NAMES):
            raise InvalidParameter(
                "test_size",
                f"test_size {size} leaves {n_test} holdout samples; "
                f"the stratified holdout needs at least {len(CLASS_NAMES)}",
            )
        object.__setattr__(self, "test_size", float(size))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def as_mlflow_params(self) -> dict[str, str]:
        """Parameters as MLflow stores them (strings; ``None`` as ``"None"``)."""
        return {key: str(value) for key, value in self.as_dict().items()}


@dataclass(frozen=True)
class Evaluation:
    """Quality of a model on the stratified holdout."""

    accuracy: float
    f1_macro: float
    confusion_matrix: list[list[int]]
    n_train: int
    n_test: int

    def metrics(self) -> dict[str, float]:
        """As logged to MLflow (and read back for an existing version)."""
        return {
            "accuracy": self.accuracy,
            "f1_macro": self.f1_macro,
            "n_train": float(self.n_train),
            "n_test": float(self.n_test),
        }


@dataclass(frozen=True)
class TrainedModel:
    model: RandomForestClassifier
    params: TrainParams
    evaluation: Evaluation
    split: Split = field(repr=False)
    # drift_reference.json of the training rows (see mlops_model.drift); not part of
    # the fingerprint: it follows from the data and the split, which are.
    drift_reference: dict[str, Any] = field(default_factory=dict, repr=False)


def build_model(params: TrainParams) -> RandomForestClassifier:
    return RandomForestClassifier(
        n_estimators=params.n_estimators,
        max_depth=params.max_depth,
        min_samples_leaf=params.min_samples_leaf,
        random_state=params.random_state,
        n_jobs=1,
    )


def evaluate(model: RandomForestClassifier, split: Split) -> Evaluation:
    predicted = model.predict(split.x_test)
    labels = list(range(len(CLASS_NAMES)))
    matrix = confusion_matrix(split.y_test, predicted, labels=labels)
    return Evaluation(
        accuracy=float(accuracy_score(split.y_test, predicted)),
        f1_macro=float(f1_score(split.y_test, predicted, average="macro", labels=labels)),
        confusion_matrix=np.asarray(matrix, dtype=np.int64).tolist(),
        n_train=len(split.y_train),
        n_test=len(split.y_test),
    )


def train(params: TrainParams) -> TrainedModel:
    """Fit the forest on the training part of the holdout split and evaluate it."""
    split = holdout_split(params.test_size, params.random_state)
    model = build_model(params).fit(split.x_train, split.y_train)
    return TrainedModel(
        model=model,
        params=params,
        evaluation=evaluate(model, split),
        split=split,
        drift_reference=compute_reference(split.x_train.to_numpy(), split.y_train.to_numpy()),
    )


def fingerprint(params: TrainParams) -> str:
    """Identity of a training: same parameters + data + code + seed = same fingerprint."""
    payload = {
        "algorithm": ALGORITHM,
        "params": params.as_dict(),
        "data": dataset_digest(),
        "package_version": __version__,
        "seed": params.random_state,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
