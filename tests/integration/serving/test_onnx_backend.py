"""The ONNX Runtime backend: parity with scikit-learn, and the fallback when it cannot be used.

Models are real: forests and pipelines trained here, saved in MLflow's format with
skops, converted by skl2onnx and run by onnxruntime; the end-to-end tests go
through the real MLflow server of the session and the Flask app.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlops_model.errors import RegistryUnavailable
from mlops_model.schema import CLASS_NAMES, FEATURE_NAMES
from mlops_model.serving import backends, checks
from mlops_model.serving.app import get_service
from mlops_model.serving.backends import ONNX_FILE, PARITY_FILE, Prepared, build_backend, prepare
from mlops_model.serving.checks import parity_error, parity_rows
from mlops_model.serving.errors import ModelLoadError, SettingsError
from mlops_model.serving.loader import RegistryLoader
from mlops_model.serving.metrics import iter_samples
from mlops_model.serving.onnx_backend import OnnxBackend
from mlops_model.serving.registry_client import ResolvedVersion
from mlops_model.serving.settings import Settings
from mlops_model.serving.sklearn_backend import SklearnBackend
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline

from tests.support.serving import iris_frame, log_and_register, set_alias

TREE = "sklearn.tree._tree.Tree"
DOUBLER = f"{__name__}.Doubler"
PIP = ["scikit-learn", "skops"]


class Doubler(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """A custom transformer: scikit-learn runs it, skl2onnx has no converter for it."""

    def fit(self, x: Any, y: Any = None) -> Doubler:
        return self

    def transform(self, x: Any) -> Any:
        return x * 2.0


def forest(**params: Any) -> RandomForestClassifier:
    return RandomForestClassifier(**{"n_estimators": 100, "random_state": 42, **params})


def fitted(estimator: Any) -> Any:
    x, y = iris_frame()
    return estimator.fit(x, y)


def save(estimator: Any, path: Path, trusted: list[str]) -> Path:
    """The estimator as an MLflow model directory, the way the trainer logs it (skops)."""
    import mlflow.sklearn

    mlflow.sklearn.save_model(
        estimator,
        str(path),
        serialization_format="skops",
        skops_trusted_types=trusted,
        pip_requirements=PIP,  # given: MLflow's inference runs a slow subprocess
    )
    return path


def reference(estimator: Any, rows: np.ndarray) -> np.ndarray:
    import pandas as pd

    return np.asarray(estimator.predict_proba(pd.DataFrame(rows, columns=list(FEATURE_NAMES))))


def register(url: str, name: str, estimator: Any, trusted: list[str]) -> str:
    version = log_and_register(url, name, estimator, trusted, pip_requirements=PIP)
    set_alias(url, name, version)
    return version


def metric(client: Any, name: str) -> list[tuple[dict[str, str], float]]:
    return list(iter_samples(client.get("/metrics").get_data(as_text=True), name))


# ------------------------------------------------------------------ parity


def test_onnx_matches_scikit_learn_on_iris_and_random_rows(tmp_path: Path) -> None:
    model = fitted(forest())
    model_dir = save(model, tmp_path / "model", [TREE])
    prepared = prepare(model_dir, "auto", [TREE])
    assert (prepared.backend, prepared.fallback) == ("onnx", None)
    assert (model_dir / ONNX_FILE).is_file()
    assert (model_dir / PARITY_FILE).is_file()
    backend = build_backend(model_dir, Prepared.read(model_dir), [TREE])  # type: ignore[arg-type]
    assert isinstance(backend, OnnxBackend)

    rows = parity_rows(seed=3)  # other random rows than the check used
    assert len(rows) == 150 + checks.PARITY_RANDOM_ROWS
    got, want = backend.predict_proba(rows), reference(model, rows)
    assert got.dtype == np.float64
    assert np.array_equal(got.argmax(axis=1), want.argmax(axis=1))
    assert np.abs(got - want).max() <= 1e-5
    assert np.allclose(got.sum(axis=1), 1.0, atol=1e-6)
    # one row alone answers exactly what it answers inside a batch
    singles = np.vstack([backend.predict_proba(rows[i : i + 1]) for i in range(20)])
    assert np.array_equal(singles, got[:20])
    # absurd but finite inputs: the same decisions as scikit-learn's clipped float32 trees
    extreme = np.array([[1e300, -1e300, 1e39, -1e39], [0.0, 5e38, -5e38, 1e-320]])
    np.testing.assert_allclose(
        backend.predict_proba(extreme), SklearnBackend(model).predict_proba(extreme), atol=1e-5
    )


def test_serving_an_onnx_model_needs_neither_mlflow_nor_scikit_learn(tmp_path: Path) -> None:
    """What keeps a worker small: the prepared ONNX model is served with onnxruntime alone."""
    import subprocess
    import sys

    model_dir = save(fitted(forest(n_estimators=10)), tmp_path / "model", [TREE])
    prepare(model_dir, "auto", [TREE])
    script = f"""
import sys
from pathlib import Path
import numpy as np
from mlops_model.serving.app import create_app
from mlops_model.serving.backends import Prepared, build_backend
from mlops_model.serving.checks import self_check
from mlops_model.serving.settings import Settings
create_app(Settings(tracking_uri="http://127.0.0.1:9"), autostart=False)
backend = build_backend(Path({str(model_dir)!r}), Prepared.read(Path({str(model_dir)!r})), [])
self_check(backend)
heavy = {{"mlflow", "sklearn", "scipy", "pandas", "skl2onnx", "onnx", "skops"}}
print(backend.name, sorted(heavy & {{m.split(".")[0] for m in sys.modules}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split("\n")[-2] == "onnx []", out.stdout + out.stderr


def test_parity_error_names_the_difference() -> None:
    a = np.array([[0.6, 0.4, 0.0], [0.2, 0.3, 0.5]])
    assert parity_error(a, a.copy(), tolerance=0.0) is None
    assert "labels differ on 1 of 2 rows" in str(parity_error(a[:, [1, 0, 2]], a))
    nudged = a + np.array([2e-5, -2e-5, 0.0])
    assert "differ by up to 2e-05" in str(parity_error(nudged, a))
    assert parity_error(nudged, a, tolerance=1e-4) is None


# ------------------------------------------------------------------ fallback


def test_a_model_skl2onnx_cannot_convert_falls_back(tmp_path: Path) -> None:
    model = fitted(make_pipeline(Doubler(), forest(n_estimators=20)))
    model_dir = save(model, tmp_path / "model", [TREE, DOUBLER])
    prepared = prepare(model_dir, "auto", [TREE, DOUBLER])
    assert prepared.backend == "sklearn"
    assert prepared.fallback is not None
    assert prepared.fallback.reason == "conversion"
    assert "Doubler" in prepared.fallback.detail
    assert not (model_dir / ONNX_FILE).exists()
    backend = build_backend(model_dir, prepared, [TREE, DOUBLER])
    assert isinstance(backend, SklearnBackend)
    assert backend.fallback == prepared.fallback
    rows = parity_rows()
    np.testing.assert_array_equal(backend.predict_proba(rows), reference(model, rows))

    # strict ONNX refuses the version; sklearn does not even try to convert
    with pytest.raises(ModelLoadError, match=r"PREDICTOR_BACKEND=onnx: conversion"):
        prepare(model_dir, "onnx", [TREE, DOUBLER])
    plain = prepare(model_dir, "sklearn", [TREE, DOUBLER])
    assert (plain.backend, plain.fallback) == ("sklearn", None)


@pytest.mark.parametrize("case", ["other-forest", "tolerance-0"])
def test_a_model_off_parity_falls_back(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # min_samples_leaf > 1: impure leaves, probabilities like 2/7 that ONNX's float32
    # answer cannot hit exactly
    model = fitted(forest(n_estimators=30, min_samples_leaf=5))
    model_dir = save(model, tmp_path / "model", [TREE])
    if case == "other-forest":  # a graph that answers for another forest
        real = backends.convert_to_onnx
        other = SklearnBackend(fitted(forest(n_estimators=3, random_state=7, max_depth=1)))
        monkeypatch.setattr(backends, "convert_to_onnx", lambda _: real(other))
    else:
        monkeypatch.setattr(checks, "PARITY_TOLERANCE", 0.0)
    prepared = prepare(model_dir, "auto", [TREE])
    assert prepared.backend == "sklearn"
    assert prepared.fallback is not None
    assert prepared.fallback.reason == "parity"
    expected = "labels differ" if case == "other-forest" else "tolerance 0"
    assert expected in prepared.fallback.detail
    backend = build_backend(model_dir, prepared, [TREE])
    assert backend.name == "sklearn"
    assert backend.fallback == prepared.fallback  # type: ignore[attr-defined]


def test_missing_onnx_packages_fall_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir = save(fitted(forest(n_estimators=5)), tmp_path / "model", [TREE])
    monkeypatch.setitem(__import__("sys").modules, "skl2onnx", None)  # import raises
    prepared = prepare(model_dir, "auto", [TREE])
    assert prepared.fallback is not None
    assert prepared.fallback.reason == "unavailable"


# ------------------------------------------------------------------ through the app


def test_fallback_serves_identical_predictions_and_shows_why(
    make_app: Any, mlflow_server: Any
) -> None:
    name = "onnx-fallback-iris"
    model = fitted(make_pipeline(Doubler(), forest(n_estimators=20)))
    register(mlflow_server.url, name, model, [TREE, DOUBLER])
    apps = {
        backend: make_app(
            Settings(
                model_name=name,
                tracking_uri=mlflow_server.url,
                poll_interval=60,
                backend=backend,
                skops_trusted_types=(TREE, DOUBLER),
                prepare_in_subprocess=False,  # the Doubler class lives in this test module
            )
        )
        for backend in ("auto", "sklearn")
    }
    for app in apps.values():
        assert get_service(app).start(wait=60), get_service(app).watcher.last_error
    auto, plain = apps["auto"].test_client(), apps["sklearn"].test_client()

    info = auto.get("/model").get_json()
    assert (info["backend"], info["backend_requested"]) == ("sklearn", "auto")
    assert info["backend_fallback"]["reason"] == "conversion"
    assert "Doubler" in info["backend_fallback"]["detail"]
    assert plain.get("/model").get_json()["backend_fallback"] is None

    rows = parity_rows()[::5]
    answers = [c.post("/predict", json={"instances": rows.tolist()}) for c in (auto, plain)]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].get_data() == answers[1].get_data()  # byte for byte
    body = answers[0].get_json()
    want = reference(model, rows)
    assert body["predictions"] == [CLASS_NAMES[i] for i in want.argmax(axis=1)]
    np.testing.assert_array_equal(body["probabilities"], want)

    fallbacks = {lab["reason"]: v for lab, v in metric(auto, "predictor_backend_fallbacks_total")}
    assert fallbacks == {"unavailable": 0.0, "conversion": 1.0, "parity": 0.0}
    assert [lab["backend"] for lab, _ in metric(auto, "predictor_model_info")] == ["sklearn"]
    assert {v for _, v in metric(plain, "predictor_backend_fallbacks_total")} == {0.0}


def test_fast_path_answers_exactly_like_flask(
    make_app: Any, serving_models: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /predict is answered before Flask when all is well; byte for byte like Flask.

    The front layer (``app.wsgi_app``) hands what it does not answer to the Flask WSGI
    app in its ``flask_app`` attribute; a spy there records what reached Flask. A
    request the fast path answered never reaches it. With the fast path off every
    request reaches Flask and the answers stay byte for byte the same: only that
    record tells the two apart.
    """
    from werkzeug.test import Client

    app = make_app(
        Settings(
            model_name=serving_models.name,
            tracking_uri=serving_models.url,
            poll_interval=60,
            prepare_in_subprocess=False,
        )
    )
    set_alias(serving_models.url, serving_models.name, serving_models.strong)
    assert get_service(app).start(wait=60)
    front_layer = app.wsgi_app
    flask_wsgi = front_layer.flask_app  # type: ignore[attr-defined]
    reached_flask: list[str] = []

    def spy(environ: dict[str, Any], start_response: Any) -> Any:
        reached_flask.append(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}")
        return flask_wsgi(environ, start_response)

    monkeypatch.setattr(front_layer, "flask_app", spy)
    front = app.test_client()
    flask_only = Client(flask_wsgi)  # Flask alone, without the front layer
    rows = parity_rows()[:40].tolist()
    bodies = [  # (payload, answered by the fast path)
        ({"instances": rows}, True),
        ({"instances": [dict(zip(FEATURE_NAMES, r, strict=True)) for r in rows[:3]]}, True),
        (dict(zip(FEATURE_NAMES, rows[0], strict=True)), True),
        ({"instances": [[1, 2, 3]]}, False),  # a client error: Flask answers both
    ]
    for i, (payload, fast) in enumerate(bodies):
        data = json.dumps(payload)
        reached_flask.clear()
        a = front.post("/predict", data=data, content_type="application/json")
        who = "the fast path" if fast else "Flask"
        assert reached_flask == ([] if fast else ["POST /predict"]), f"body {i}: not {who}"
        b = flask_only.post("/predict", data=data, content_type="application/json")
        assert (a.status_code, a.get_data()) == (b.status_code, b.get_data())
        for header in ("Content-Type", "Content-Length", "X-Model-Version"):
            assert a.headers.get(header) == b.headers.get(header)
        assert a.status_code == (200 if fast else 400)
    requests = metric(front, "predictor_requests_total")
    assert {(lab["status"], v) for lab, v in requests if lab["endpoint"] == "/predict"} == {
        ("200", 3.0),
        ("400", 1.0),
    }


# ------------------------------------------------------------------ loading


def test_preparation_in_a_child_process(serving_models: Any, tmp_path: Path) -> None:
    settings = Settings(
        model_name=serving_models.name,
        tracking_uri=serving_models.url,
        prepare_in_subprocess=True,
        cache_dir=str(tmp_path / "cache"),
    )
    loader = RegistryLoader(settings)
    assert loader.isolated
    resolved = ResolvedVersion(serving_models.name, "champion", serving_models.strong, None)
    model = loader.load(resolved)
    assert model.backend_name == "onnx"
    assert model.backend_fallback is None
    cached = next((tmp_path / "cache").glob(f"*/v{serving_models.strong}"))
    assert (cached / ONNX_FILE).is_file()  # the cache keeps the prepared model
    with pytest.raises(RegistryUnavailable, match="downloading"):
        loader.load(ResolvedVersion(serving_models.name, "champion", "9999", None))


def test_workers_of_one_host_prepare_a_version_once(
    serving_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers sharing a cache directory: one download and conversion, one model."""
    from mlops_model.serving import loader as loader_module

    real = loader_module.fetch_and_prepare
    prepared: list[str] = []

    def counting(request: Any, work: Path, isolate: bool) -> Path:
        prepared.append(request.version)
        return real(request, work, isolate)

    monkeypatch.setattr(loader_module, "fetch_and_prepare", counting)
    settings = Settings(
        model_name=serving_models.name,
        tracking_uri=serving_models.url,
        prepare_in_subprocess=False,
        cache_dir=str(tmp_path / "cache"),
    )
    resolved = ResolvedVersion(serving_models.name, "champion", serving_models.strong, None)
    first = RegistryLoader(settings).load(resolved)
    second = RegistryLoader(settings).load(resolved)
    assert prepared == [serving_models.strong]
    assert (second.version, second.source, second.backend_name) == (
        serving_models.strong,
        "registry",
        "onnx",
    )
    rows = iris_frame()[0].to_numpy(dtype=np.float64)
    assert np.array_equal(first.predict_proba(rows), second.predict_proba(rows))


def test_a_cached_copy_without_preparation_is_prepared_again(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    save(fitted(forest(n_estimators=10)), cache / "iris" / "v3", [TREE])
    (cache / "iris" / "champion.json").write_text(json.dumps({"version": "3", "run_id": None}))
    settings = Settings(
        tracking_uri="http://127.0.0.1:9", cache_dir=str(cache), prepare_in_subprocess=False
    )
    model = RegistryLoader(settings).load_cached()
    assert model is not None
    assert (model.version, model.source, model.backend_name) == ("3", "cache", "onnx")


def test_backend_settings() -> None:
    assert Settings.from_env({"PREDICTOR_BACKEND": "sklearn"}).backend == "sklearn"
    assert Settings.from_env({"PREDICTOR_BACKEND": "onnx"}).backend == "onnx"
    for raw, value in (("true", True), ("0", False), ("", None)):
        env = {"PREDICTOR_PREPARE_IN_SUBPROCESS": raw}
        assert Settings.from_env(env).prepare_in_subprocess is value
    with pytest.raises(SettingsError, match="PREDICTOR_BACKEND"):
        Settings.from_env({"PREDICTOR_BACKEND": "tensorrt"})
    with pytest.raises(SettingsError, match="PREDICTOR_PREPARE_IN_SUBPROCESS"):
        Settings.from_env({"PREDICTOR_PREPARE_IN_SUBPROCESS": "maybe"})
