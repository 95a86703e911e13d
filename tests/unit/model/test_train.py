"""mlops_model data, training, fingerprint and the promotion gate: no MLflow server needed."""

from __future__ import annotations

import subprocess
import sys

import mlops_model.train as train_module
import pytest
from mlops_model.data import dataset_digest, holdout_split, load_features, load_frame
from mlops_model.errors import InvalidParameter
from mlops_model.gate import Decision, decide_promotion
from mlops_model.schema import CLASS_NAMES, FEATURE_NAMES
from mlops_model.train import TrainParams, fingerprint, train
from mlops_model.validation import validate_alias, validate_min_accuracy, validate_model_name


def test_iris_frame_has_schema_columns():
    features, target = load_features()
    assert list(features.columns) == list(FEATURE_NAMES)
    assert features.shape == (150, 4)
    assert sorted(target.unique()) == list(range(len(CLASS_NAMES)))
    assert list(load_frame().columns) == [*FEATURE_NAMES, "target"]


def test_dataset_digest_is_stable_across_processes():
    digest = dataset_digest()
    assert len(digest) == 64
    other = subprocess.run(
        [
            sys.executable,
            "-c",
            "from mlops_model.data import dataset_digest; print(dataset_digest())",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert other == digest


def test_holdout_split_is_stratified_and_seeded():
    split = holdout_split(0.2, 42)
    assert len(split.y_test) == 30
    assert split.y_test.value_counts().to_dict() == {0: 10, 1: 10, 2: 10}
    again = holdout_split(0.2, 42)
    assert list(again.x_test.index) == list(split.x_test.index)
    assert list(holdout_split(0.2, 7).x_test.index) != list(split.x_test.index)


@pytest.mark.parametrize(
    ("kwargs", "field", "text"),
    [
        ({"n_estimators": 0}, "n_estimators", "n_estimators must be >= 1, got 0"),
        ({"n_estimators": True}, "n_estimators", "n_estimators must be an integer"),
        ({"n_estimators": 100_000}, "n_estimators", "n_estimators must be <= 5000"),
        ({"max_depth": 0}, "max_depth", "max_depth must be >= 1, got 0"),
        ({"min_samples_leaf": 0}, "min_samples_leaf", "min_samples_leaf must be >= 1, got 0"),
        ({"random_state": -1}, "random_state", "random_state must be >= 0, got -1"),
        ({"test_size": 0.0}, "test_size", "test_size must be > 0 and < 0.9, got 0.0"),
        ({"test_size": 0.95}, "test_size", "test_size must be > 0 and < 0.9, got 0.95"),
        ({"test_size": 0.01}, "test_size", "needs at least 3"),
        ({"test_size": float("nan")}, "test_size", "test_size must be a number"),
    ],
)
def test_bad_params_name_the_field(kwargs, field, text):
    with pytest.raises(InvalidParameter, match=text) as info:
        TrainParams(**kwargs)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)


def test_train_is_deterministic_and_evaluated():
    params = TrainParams(n_estimators=30, max_depth=5)
    first, second = train(params), train(params)
    assert first.evaluation == second.evaluation
    evaluation = first.evaluation
    assert 0.85 <= evaluation.accuracy <= 1.0
    assert 0.0 < evaluation.f1_macro <= 1.0
    assert sum(map(sum, evaluation.confusion_matrix)) == evaluation.n_test == 30
    assert evaluation.n_train == 120
    assert set(evaluation.metrics()) == {"accuracy", "f1_macro", "n_train", "n_test"}


def test_fingerprint_is_stable_and_sensitive():
    base = TrainParams(n_estimators=10)
    assert fingerprint(base) == fingerprint(TrainParams(n_estimators=10))
    variants = [
        TrainParams(n_estimators=11),
        TrainParams(n_estimators=10, max_depth=3),
        TrainParams(n_estimators=10, min_samples_leaf=2),
        TrainParams(n_estimators=10, random_state=1),
        TrainParams(n_estimators=10, test_size=0.3),
    ]
    prints = {fingerprint(p) for p in variants}
    assert len(prints) == len(variants)
    assert fingerprint(base) not in prints


def test_fingerprint_depends_on_package_version(monkeypatch):
    before = fingerprint(TrainParams())
    monkeypatch.setattr(train_module, "__version__", "999.0.0")
    assert fingerprint(TrainParams()) != before


@pytest.mark.parametrize(
    ("candidate", "champion", "min_accuracy", "force", "promote", "why"),
    [
        (0.95, None, 0.9, False, True, "no current holder"),
        (0.85, None, 0.9, False, False, "below min_accuracy"),
        (0.85, None, 0.9, True, False, "below min_accuracy"),  # force never lowers the bar
        (0.95, 0.93, 0.9, False, True, ">= current holder"),
        (0.93, 0.93, 0.9, False, True, ">= current holder"),  # ties promote
        (0.91, 0.97, 0.9, False, False, "force overrides"),
        (0.91, 0.97, 0.9, True, True, "forced"),
        (0.95, {}, 0.9, False, True, "no accuracy metric"),
    ],
)
def test_decide_promotion(candidate, champion, min_accuracy, force, promote, why):
    champion_metrics = (
        champion if isinstance(champion, dict) or champion is None else {"accuracy": champion}
    )
    decision = decide_promotion({"accuracy": candidate}, champion_metrics, min_accuracy, force)
    assert isinstance(decision, Decision)
    assert decision.promote is promote
    assert why in decision.reason


def test_decide_promotion_without_candidate_accuracy():
    assert decide_promotion({}, None, 0.0).promote is False


@pytest.mark.parametrize(
    "alias", ["v1", "V42", "latest", "LATEST", "1abc", "-x", "a b", "a/b", "x" * 256]
)
def test_bad_aliases(alias):
    with pytest.raises(InvalidParameter) as info:
        validate_alias(alias)
    assert info.value.field == "alias"
    assert "alias" in str(info.value)


@pytest.mark.parametrize("alias", ["champion", "challenger-2", "A_b", "v1x", "x" * 255])
def test_good_aliases(alias):
    assert validate_alias(alias) == alias


def test_empty_alias_means_none():
    assert validate_alias("") is None
    assert validate_alias(None) is None


def test_model_name_and_min_accuracy_validation():
    assert validate_model_name("iris") == "iris"
    for bad in ("", "a/b", "a:b", "it's", "-x"):
        with pytest.raises(InvalidParameter, match="model_name"):
            validate_model_name(bad)
    assert validate_min_accuracy(1) == 1.0
    for bad in (-0.1, 1.01, float("nan"), True):
        with pytest.raises(InvalidParameter, match="min_accuracy"):
            validate_min_accuracy(bad)


def test_drift_reference_of_the_training_rows():
    import numpy as np
    from mlops_model.drift import DriftReference, bin_index

    trained = train(TrainParams(n_estimators=5))
    reference = DriftReference.from_dict(trained.drift_reference)
    x_train = trained.split.x_train.to_numpy()
    assert reference.n_rows == len(x_train)
    for j, feature in enumerate(reference.features):
        # 10 quantile bins at most; Iris's repeated values merge some
        assert 2 <= len(feature.shares) <= 10
        # the shares are what serving's binning makes of the training rows
        counts = np.bincount(
            bin_index(np.array(feature.edges), x_train[:, j]), minlength=len(feature.shares)
        )
        assert list(feature.shares) == pytest.approx((counts / len(x_train)).tolist())
    assert sum(reference.class_shares) == pytest.approx(1.0)
    # same data, same split: the same reference (it stays out of the fingerprint)
    assert train(TrainParams(n_estimators=7)).drift_reference == trained.drift_reference
