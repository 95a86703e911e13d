#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mlops-stack developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlflow_model_info
short_description: Read the versions and aliases of a model in the MLflow Model Registry
version_added: "0.1.0"
description:
  - Lists the versions of the registered model O(model_name) with their run, holdout metrics,
    training fingerprint, quality gate tag and aliases, and the model's alias map.
  - Read-only. Returns RV(exists=false) for a model that is not registered.
author:
  - mlops-stack developers (@mlops-stack)
extends_documentation_fragment:
  - mlops.stack.mlflow
  - mlops.stack.mlflow.mlops_model
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - This module only reads.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  model_name:
    description: Name of the registered model.
    type: str
    default: iris
notes:
  - Run the module with the interpreter of the MLflow host's venv, for example with
    C(ansible_python_interpreter), so that C(mlflow), C(scikit-learn) and C(mlops_model) import.
seealso:
  - module: mlops.stack.mlflow_model
"""

EXAMPLES = r"""
- name: Read the Iris model's versions and aliases
  mlops.stack.mlflow_model_info:
    tracking_uri: http://127.0.0.1:5004
    model_name: iris
  register: iris

- name: Show which version serves as champion
  ansible.builtin.debug:
    msg: "champion is version {{ iris.aliases.champion | default('none') }}"

- name: Versions that passed the quality gate (candidates for a rollback)
  ansible.builtin.set_fact:
    iris_good_versions: "{{ iris.versions | selectattr('gate', 'equalto', 'passed')
                            | map(attribute='version') | list }}"
"""

RETURN = r"""
exists:
  description: Whether the registered model exists.
  returned: always
  type: bool
  sample: true
model_name:
  description: Name of the registered model.
  returned: always
  type: str
  sample: iris
aliases:
  description: Map of alias to version.
  returned: always
  type: dict
  sample: {"champion": "3"}
latest_version:
  description: Highest version number, V(null) when there is none.
  returned: always
  type: str
  sample: "3"
versions:
  description: All versions, oldest first.
  returned: always
  type: list
  elements: dict
  contains:
    version:
      description: Version number.
      type: str
      sample: "3"
    name:
      description: Registered model name.
      type: str
      sample: iris
    model_uri:
      description: URI of the version.
      type: str
      sample: models:/iris/3
    run_id:
      description: Run that trained the version.
      type: str
      sample: 9c670a9b70e64da4bf5670cc9bfb58d3
    metrics:
      description: Metrics of that run (accuracy, f1_macro, n_train, n_test).
      type: dict
      sample: {"accuracy": 0.9667, "f1_macro": 0.9666, "n_test": 30.0, "n_train": 120.0}
    confusion_matrix:
      description: Holdout confusion matrix recorded on the run, V(null) if absent.
      type: list
      elements: list
      sample: [[10, 0, 0], [0, 9, 1], [0, 0, 10]]
    fingerprint:
      description: Tag C(mlops.fingerprint) of the version.
      type: str
      sample: 34ec292f9b84730d8f9a18e8328064fbf8d3957800ddef9a4c781ad9a1eaa1f7
    gate:
      description: Tag C(mlops.gate) of the version (V(passed) or V(failed)).
      type: str
      sample: passed
    aliases:
      description: Aliases pointing at the version.
      type: list
      elements: str
      sample: ["champion"]
    status:
      description: Registry status of the version.
      type: str
      sample: READY
    source:
      description: Artifact source of the version.
      type: str
      sample: models:/m-0123456789abcdef
    creation_timestamp:
      description: Creation time in milliseconds since the epoch.
      type: int
      sample: 1795707178439
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mlops.stack.plugins.module_utils.mlflow_common import (
    check_requirements,
    connection_kwargs,
    fail_from_error,
)
from ansible_collections.mlops.stack.plugins.module_utils.mlflow_connection import (
    mlflow_argument_spec,
)
from ansible_collections.mlops.stack.plugins.module_utils import mlflow_common


def main() -> None:
    argument_spec = mlflow_argument_spec()
    argument_spec.update(
        model_name=dict(type="str", default="iris"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    check_requirements(module)

    try:
        info = mlflow_common.mlops_ensure.model_info(
            module.params["tracking_uri"], module.params["model_name"], **connection_kwargs(module)
        )
    except Exception as error:  # pylint: disable=broad-exception-caught
        fail_from_error(module, error)

    module.exit_json(changed=False, **info)


if __name__ == "__main__":
    main()
