"""The Iris data set, from scikit-learn's bundled copy (no download)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
from sklearn.datasets import load_iris  # type: ignore[import-untyped,unused-ignore]
from sklearn.model_selection import train_test_split  # type: ignore[import-untyped,unused-ignore]

from mlops_model.schema import CLASS_NAMES, FEATURE_NAMES

TARGET_NAME = "target"


@dataclass(frozen=True)
class Split:
    """A stratified holdout split."""

    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series


@lru_cache(maxsize=1)
def _load() -> tuple[pd.DataFrame, pd.Series]:
    bunch = load_iris(as_frame=False)
    if tuple(str(name) for name in bunch.target_names) != CLASS_NAMES:
        raise RuntimeError(f"unexpected Iris classes {list(bunch.target_names)}")
    features = pd.DataFrame(np.asarray(bunch.data, dtype=np.float64), columns=list(FEATURE_NAMES))
    target = pd.Series(np.asarray(bunch.target, dtype=np.int64), name=TARGET_NAME)
    return features, target


def load_features() -> tuple[pd.DataFrame, pd.Series]:
    """Return copies of the features (schema column names, cm) and the class index target."""
    features, target = _load()
    return features.copy(), target.copy()


def load_frame() -> pd.DataFrame:
    """Features and target in one frame, as logged to MLflow as the run's input dataset."""
    features, target = load_features()
    return features.assign(**{TARGET_NAME: target})


@lru_cache(maxsize=1)
def dataset_digest() -> str:
    """sha256 of the feature and target bytes: stable across runs, processes and hosts."""
    features, target = _load()
    digest = hashlib.sha256()
    digest.update(",".join(FEATURE_NAMES).encode())
    digest.update(np.ascontiguousarray(features.to_numpy(), dtype="<f8").tobytes())
    digest.update(np.ascontiguousarray(target.to_numpy(), dtype="<i8").tobytes())
    return digest.hexdigest()


def holdout_split(test_size: float, random_state: int) -> Split:
    """Stratified holdout split of Iris, reproducible for a given seed."""
    features, target = load_features()
    x_train, x_test, y_train, y_test = train_test_split(
        features, target, test_size=test_size, random_state=random_state, stratify=target
    )
    return Split(x_train=x_train, x_test=x_test, y_train=y_train, y_test=y_test)


def n_samples() -> int:
    return len(_load()[1])
