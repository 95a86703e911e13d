"""Predictor settings, read once from environment variables into a typed, frozen object."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from mlops_model.schema import DEFAULT_ALIAS, DEFAULT_MODEL_NAME, SKOPS_TRUSTED_TYPES
from mlops_model.serving.errors import SettingsError

T = TypeVar("T")

MIB = 1024 * 1024
# PREDICTOR_BACKEND values; see mlops_model.serving.backends.
BACKEND_NAMES: tuple[str, ...] = ("auto", "onnx", "sklearn")


@dataclass(frozen=True)
class Settings:
    """Everything the serving app needs to know; see :meth:`from_env` for the variables."""

    model_name: str = DEFAULT_MODEL_NAME
    model_alias: str = DEFAULT_ALIAS
    # None: MLflow's own default resolution (MLFLOW_TRACKING_URI, then ./mlruns).
    tracking_uri: str | None = None
    poll_interval: float = 10.0
    max_rows: int = 10_000
    max_body_bytes: int = 4 * MIB
    # auto (ONNX Runtime at parity, else scikit-learn), onnx (strict) or sklearn
    backend: str = "auto"
    # How long a gunicorn worker waits for its first model before it accepts requests.
    initial_load_timeout: float = 30.0
    # Last-known-good model cache (a writable directory), or None for no cache.
    cache_dir: str | None = None
    # Types skops may load; the predictor's own list, never the one stored in the model.
    skops_trusted_types: tuple[str, ...] = field(default=SKOPS_TRUSTED_TYPES)
    # Download and prepare models in a child process (True), in this one (False), or
    # None: in a child unless MLflow is imported here already (see serving.prepare).
    prepare_in_subprocess: bool | None = None
    # Count served rows into the drift reference bins of the served version (see
    # mlops_model.serving.metrics); off leaves only the fixed feature histograms.
    drift_metrics: bool = True
    # The host's shared alias file (see mlops_model.serving.alias_state), written by one
    # follower process; None: this process asks the registry itself.
    alias_file: str | None = None
    # Seconds between the follower's alias lookups; 0 turns the shared follower off.
    alias_poll_interval: float = 1.0

    def __post_init__(self) -> None:
        if not self.model_name:
            raise SettingsError("PREDICTOR_MODEL_NAME must not be empty")
        if not self.model_alias:
            raise SettingsError("PREDICTOR_MODEL_ALIAS must not be empty")
        if not (math.isfinite(self.poll_interval) and self.poll_interval > 0):
            raise SettingsError("PREDICTOR_POLL_INTERVAL must be a positive number of seconds")
        if self.max_rows < 1:
            raise SettingsError("PREDICTOR_MAX_ROWS must be at least 1")
        if self.max_body_bytes < 1024:
            raise SettingsError("PREDICTOR_MAX_BODY_BYTES must be at least 1024")
        if not (math.isfinite(self.initial_load_timeout) and self.initial_load_timeout >= 0):
            raise SettingsError("PREDICTOR_INITIAL_LOAD_TIMEOUT must be >= 0 seconds")
        if self.backend not in BACKEND_NAMES:
            raise SettingsError(
                f"PREDICTOR_BACKEND={self.backend!r} is unknown; known: {', '.join(BACKEND_NAMES)}"
            )
        if not (math.isfinite(self.alias_poll_interval) and self.alias_poll_interval >= 0):
            raise SettingsError("PREDICTOR_ALIAS_POLL_INTERVAL must be >= 0 seconds")

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_name}@{self.model_alias}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings; unset or empty variables keep their defaults.

        ``PREDICTOR_MODEL_NAME``, ``PREDICTOR_MODEL_ALIAS``, ``MLFLOW_TRACKING_URI``,
        ``PREDICTOR_POLL_INTERVAL`` (s), ``PREDICTOR_MAX_ROWS``, ``PREDICTOR_MAX_BODY_BYTES``,
        ``PREDICTOR_BACKEND``, ``PREDICTOR_INITIAL_LOAD_TIMEOUT`` (s),
        ``PREDICTOR_SKOPS_TRUSTED_TYPES`` (comma separated), ``PREDICTOR_CACHE_DIR``,
        ``PREDICTOR_PREPARE_IN_SUBPROCESS`` (true/false; unset: automatic),
        ``PREDICTOR_DRIFT_METRICS`` (true/false), ``PREDICTOR_ALIAS_FILE``,
        ``PREDICTOR_ALIAS_POLL_INTERVAL`` (s; 0: no shared follower).
        """
        src = os.environ if env is None else env
        d = cls()

        def get(name: str, conv: Callable[[str], T], default: T) -> T:
            raw = src.get(name, "").strip()
            if not raw:
                return default
            try:
                return conv(raw)
            except ValueError as exc:
                raise SettingsError(f"{name}={raw!r} is not valid: {exc}") from None

        trusted = get(
            "PREDICTOR_SKOPS_TRUSTED_TYPES",
            lambda s: tuple(t.strip() for t in s.split(",") if t.strip()),
            d.skops_trusted_types,
        )
        return cls(
            model_name=get("PREDICTOR_MODEL_NAME", str, d.model_name),
            model_alias=get("PREDICTOR_MODEL_ALIAS", str, d.model_alias),
            tracking_uri=get("MLFLOW_TRACKING_URI", str, d.tracking_uri),
            poll_interval=get("PREDICTOR_POLL_INTERVAL", float, d.poll_interval),
            max_rows=get("PREDICTOR_MAX_ROWS", int, d.max_rows),
            max_body_bytes=get("PREDICTOR_MAX_BODY_BYTES", int, d.max_body_bytes),
            backend=get("PREDICTOR_BACKEND", str, d.backend),
            initial_load_timeout=get(
                "PREDICTOR_INITIAL_LOAD_TIMEOUT", float, d.initial_load_timeout
            ),
            skops_trusted_types=trusted,
            cache_dir=get("PREDICTOR_CACHE_DIR", str, d.cache_dir),
            prepare_in_subprocess=get(
                "PREDICTOR_PREPARE_IN_SUBPROCESS", _boolean, d.prepare_in_subprocess
            ),
            drift_metrics=get("PREDICTOR_DRIFT_METRICS", _boolean, d.drift_metrics),
            alias_file=get("PREDICTOR_ALIAS_FILE", str, d.alias_file),
            alias_poll_interval=get("PREDICTOR_ALIAS_POLL_INTERVAL", float, d.alias_poll_interval),
        )


def _boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")
