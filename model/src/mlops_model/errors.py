"""Exceptions of the mlops_model package.

Callers (the CLI, the Ansible modules) catch :class:`MlopsModelError` and show
its message; nothing here leaks an MLflow or requests exception type.
"""

from __future__ import annotations


class MlopsModelError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidParameter(MlopsModelError, ValueError):
    """A training or gate parameter is out of range; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class RegistryUnavailable(MlopsModelError):
    """The MLflow tracking server (and registry) did not answer: refused, timed out, 5xx.

    The one such error of the package, for training and serving alike. With ``uri``
    the message names the server; without it (the predictor's alias lookups and
    downloads, whose ``reason`` names the model) ``reason`` is the whole message.
    """

    def __init__(self, uri: str | None, reason: str) -> None:
        super().__init__(
            reason if uri is None else f"MLflow tracking server {uri} is unreachable: {reason}"
        )
        self.uri = uri
        self.reason = reason


class RegistryError(MlopsModelError):
    """MLflow answered, but refused or failed an operation."""
