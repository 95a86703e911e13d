"""Both predictors of the local stack serve the registry's champion."""

from __future__ import annotations

import pytest

from tests.support.lab_http import IRIS_ROWS, MLFLOW, get_json, post_json

from .conftest import Stack

pytestmark = pytest.mark.nodes

PREDICTORS = ("http://127.0.0.1:5001", "http://127.0.0.1:5002")


@pytest.mark.parametrize("base", PREDICTORS)
def test_predictor_serves_the_champion(local_stack: Stack, base: str):
    status, body = post_json(f"{base}/predict", {"instances": IRIS_ROWS})
    assert status == 200, body
    assert body["predictions"] == ["setosa", "versicolor", "virginica"]
    assert body["model"]["name"] == "iris"
    assert body["model"]["alias"] == "champion"
    champion = get_json(
        f"{MLFLOW}/api/2.0/mlflow/registered-models/alias?name=iris&alias=champion",
        account="reader",
    )["model_version"]["version"]
    assert str(body["model"]["version"]) == str(champion)
    assert get_json(f"{base}/ready")


@pytest.mark.parametrize("base", PREDICTORS)
def test_predictor_rejects_bad_input_with_a_named_field(local_stack: Stack, base: str):
    status, body = post_json(f"{base}/predict", {"instances": [[5.1, 3.5, "x", 0.2]]})
    assert status == 400
    assert "petal_length" in body["detail"] or "2" in body["detail"], body
