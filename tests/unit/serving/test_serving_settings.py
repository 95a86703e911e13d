"""Settings from environment variables, and the gunicorn configuration's defaults."""

from __future__ import annotations

import importlib
import logging
import sys

import pytest
from mlops_model.serving.errors import SettingsError
from mlops_model.serving.settings import Settings


def test_defaults() -> None:
    s = Settings.from_env({})
    assert (s.model_name, s.model_alias, s.tracking_uri) == ("iris", "champion", None)
    assert s.model_uri == "models:/iris@champion"
    assert s.max_rows == 10_000
    assert s.max_body_bytes == 4 * 1024 * 1024
    assert s.backend == "auto"
    assert s.prepare_in_subprocess is None
    assert s.skops_trusted_types == ("sklearn.tree._tree.Tree",)


def test_overrides() -> None:
    s = Settings.from_env(
        {
            "PREDICTOR_MODEL_NAME": "iris-b",
            "PREDICTOR_MODEL_ALIAS": "challenger",
            "MLFLOW_TRACKING_URI": "http://mlflow-1:5000",
            "PREDICTOR_POLL_INTERVAL": "2.5",
            "PREDICTOR_MAX_ROWS": "10",
            "PREDICTOR_MAX_BODY_BYTES": "65536",
            "PREDICTOR_INITIAL_LOAD_TIMEOUT": "0",
            "PREDICTOR_SKOPS_TRUSTED_TYPES": " a.B , c.D ,",
        }
    )
    assert s.model_uri == "models:/iris-b@challenger"
    assert s.tracking_uri == "http://mlflow-1:5000"
    assert (s.poll_interval, s.max_rows, s.max_body_bytes) == (2.5, 10, 65536)
    assert s.initial_load_timeout == 0
    assert s.skops_trusted_types == ("a.B", "c.D")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PREDICTOR_POLL_INTERVAL", "soon"),
        ("PREDICTOR_POLL_INTERVAL", "0"),
        ("PREDICTOR_POLL_INTERVAL", "nan"),
        ("PREDICTOR_MAX_ROWS", "1.5"),
        ("PREDICTOR_MAX_ROWS", "0"),
        ("PREDICTOR_MAX_BODY_BYTES", "12"),
        ("PREDICTOR_INITIAL_LOAD_TIMEOUT", "-1"),
    ],
)
def test_invalid_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_gunicorn_conf_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREDICTOR_BIND", "0.0.0.0:5001")
    monkeypatch.setenv("PREDICTOR_WORKERS", "3")
    monkeypatch.setenv("PREDICTOR_THREADS", "4")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/run/predictor/metrics")
    monkeypatch.delitem(sys.modules, "mlops_model.serving.gunicorn_conf", raising=False)
    app_logger = logging.getLogger("mlops_model")
    saved = (list(app_logger.handlers), app_logger.level, app_logger.propagate)
    conf = importlib.import_module("mlops_model.serving.gunicorn_conf")
    try:
        assert conf.bind == ["0.0.0.0:5001"]
        assert (conf.workers, conf.threads, conf.timeout, conf.keepalive) == (3, 4, 30, 5)
        assert conf.preload_app is False
        assert conf.control_socket_disable is True
        for hook in ("on_starting", "post_worker_init", "worker_exit", "child_exit"):
            assert callable(getattr(conf, hook))
        assert any(isinstance(h, logging.StreamHandler) for h in app_logger.handlers)
    finally:
        sys.modules.pop("mlops_model.serving.gunicorn_conf", None)
        app_logger.handlers[:] = saved[0]
        app_logger.setLevel(saved[1])
        app_logger.propagate = saved[2]
