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
    """The MLflow tracking server cannot be reached; ``uri`` names it."""

    def __init__(self, uri: str, reason: str) -> None:
        super().__init__(f"MLflow tracking server {uri} is unreachable: {reason}")
        self.uri = uri
        self.reason = reason


class RegistryError(MlopsModelError):
    """MLflow answered, but refused or failed an operation."""
