# -*- coding: utf-8 -*-
# Copyright: mlops-stack developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Connection options of every mlops.stack MLflow module (doc fragment mlops.stack.mlflow).

Imports nothing but Ansible: the modules that talk to MLflow's REST API run with
the MLflow host's system Python, without mlflow.
"""

from __future__ import annotations

from typing import Any

from ansible.module_utils.basic import AnsibleModule, env_fallback


def mlflow_argument_spec() -> dict[str, dict[str, Any]]:
    """Connection options every MLflow module accepts."""
    return dict(
        tracking_uri=dict(
            type="str", required=True, fallback=(env_fallback, ["MLFLOW_TRACKING_URI"])
        ),
        tracking_username=dict(type="str", fallback=(env_fallback, ["MLFLOW_TRACKING_USERNAME"])),
        tracking_password=dict(
            type="str", no_log=True, fallback=(env_fallback, ["MLFLOW_TRACKING_PASSWORD"])
        ),
        request_timeout=dict(type="int", default=10),
    )


def request_timeout(module: AnsibleModule) -> int:
    """O(request_timeout), or fail_json naming it when it is below one second."""
    timeout = module.params["request_timeout"]
    if timeout < 1:
        module.fail_json(msg="request_timeout must be >= 1, got %d" % timeout)
    return timeout
