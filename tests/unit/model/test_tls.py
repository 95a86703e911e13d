"""mlops_model.tls: the standard-library requests verify MLflow as its own client does."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from mlops_model.tls import tracking_tls_context


@pytest.fixture(autouse=True)
def no_tls_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "MLFLOW_TRACKING_SERVER_CERT_PATH",
        "MLFLOW_TRACKING_CLIENT_CERT_PATH",
        "MLFLOW_TRACKING_INSECURE_TLS",
    ):
        monkeypatch.delenv(name, raising=False)


def test_plain_http_needs_no_context() -> None:
    assert tracking_tls_context("http://127.0.0.1:5004") is None


def test_https_verifies_the_certificate_and_the_host_name() -> None:
    context = tracking_tls_context("https://mlflow-1:5000")
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_the_ca_of_mlflows_variable_is_the_one_trusted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # a file that is no CA bundle: proof that the variable is read, not ignored
    bogus = tmp_path / "ca.crt"
    bogus.write_text("not a certificate\n")
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(bogus))
    with pytest.raises(ssl.SSLError):
        tracking_tls_context("https://mlflow-1:5000")
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(tmp_path / "missing.crt"))
    with pytest.raises(FileNotFoundError):
        tracking_tls_context("https://mlflow-1:5000")


def test_insecure_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
    context = tracking_tls_context("https://mlflow-1:5000")
    assert context is not None
    assert context.verify_mode == ssl.CERT_NONE
