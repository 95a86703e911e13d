# -*- coding: utf-8 -*-
# Copyright: mlops-stack developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Shared code of the mlops.stack MLflow modules.

The modules are thin: everything that talks to MLflow lives in the
``mlops_model`` package, which must be installed in the interpreter that runs
the module (the MLflow host's venv).
"""

from __future__ import annotations

import traceback
from typing import Any, NoReturn

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.mlops.stack.plugins.module_utils.mlflow_connection import request_timeout

# What the modules use from here; the mlops_model names are re-exported.
__all__ = [
    "HAS_MLOPS_LIBS",
    "InvalidParameter",
    "MlopsModelError",
    "RegistryUnavailable",
    "TrainParams",
    "check_requirements",
    "connection_kwargs",
    "fail_from_error",
    "mlops_ensure",
    "validate_alias",
    "validate_min_accuracy",
    "validate_model_name",
    "validate_version",
]

# (import name, distribution name for missing_required_lib, import traceback)
_IMPORT_ERRORS = []

try:
    import mlflow
except ImportError:
    _IMPORT_ERRORS.append(("mlflow", "mlflow", traceback.format_exc()))
    mlflow = None

try:
    import sklearn  # noqa: F401  # pylint: disable=unused-import
except ImportError:
    _IMPORT_ERRORS.append(("sklearn", "scikit-learn", traceback.format_exc()))

try:
    from mlops_model import ensure as mlops_ensure
    from mlops_model.errors import InvalidParameter, MlopsModelError, RegistryUnavailable
    from mlops_model.train import TrainParams
    from mlops_model.validation import (
        validate_alias,
        validate_min_accuracy,
        validate_model_name,
        validate_version,
    )
except ImportError:
    _IMPORT_ERRORS.append(("mlops_model", "mlops-model", traceback.format_exc()))
    mlops_ensure = None
    InvalidParameter = MlopsModelError = RegistryUnavailable = None
    validate_alias = validate_min_accuracy = validate_model_name = validate_version = None
    TrainParams = None

HAS_MLOPS_LIBS = not _IMPORT_ERRORS


def check_requirements(module: AnsibleModule) -> None:
    """fail_json with missing_required_lib for the first library that did not import."""
    if _IMPORT_ERRORS:
        _name, distribution, trace = _IMPORT_ERRORS[0]
        module.fail_json(msg=missing_required_lib(distribution), exception=trace)
    major = str(getattr(mlflow, "__version__", "0")).split(".", 1)[0]
    if not major.isdigit() or int(major) < 3:
        module.fail_json(
            msg=missing_required_lib("mlflow >= 3.0")
            + " Found mlflow %s." % getattr(mlflow, "__version__", "?")
        )


def connection_kwargs(module: AnsibleModule) -> dict[str, Any]:
    """Keyword arguments of the mlops_model entry points taken from the shared options."""
    params = module.params
    return dict(
        username=params["tracking_username"],
        password=params["tracking_password"],
        request_timeout=request_timeout(module),
    )


def fail_from_error(module: AnsibleModule, error: BaseException, **result: Any) -> NoReturn:
    """Turn an exception from mlops_model into fail_json with a clear message."""
    if RegistryUnavailable is not None and isinstance(error, RegistryUnavailable):
        module.fail_json(msg=str(error), tracking_uri=error.uri, **result)
    if InvalidParameter is not None and isinstance(error, InvalidParameter):
        module.fail_json(msg=str(error), parameter=error.field, **result)
    if MlopsModelError is not None and isinstance(error, MlopsModelError):
        module.fail_json(msg=str(error), **result)
    module.fail_json(
        msg="unexpected %s: %s" % (type(error).__name__, error),
        exception=traceback.format_exc(),
        **result,
    )
