"""The exceptions of the predictor, in one place.

A registry that does not answer is :class:`mlops_model.errors.RegistryUnavailable`,
the package's one such error, raised by training and serving alike.
"""

from __future__ import annotations


class SettingsError(ValueError):
    """An environment variable holds a value the predictor cannot use; the message names it."""


class AliasNotFound(Exception):
    """The registry answered: no such registered model or alias."""


class ModelLoadError(Exception):
    """The model version exists but cannot be turned into a backend."""


class SelfCheckError(ModelLoadError):
    """The model loaded but its outputs on the sample rows are not probabilities."""


class ClientError(Exception):
    """A request the client must fix; becomes ``{"error": code, "detail": detail}``."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
