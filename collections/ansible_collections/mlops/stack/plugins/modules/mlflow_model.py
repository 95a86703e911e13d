#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mlops-stack developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlflow_model
short_description: Train, register and promote the Iris model in the MLflow Model Registry
version_added: "0.1.0"
description:
  - Ensures that a version of the registered model O(model_name), trained with the given
    parameters, exists in the MLflow Model Registry, and that it holds the alias O(alias)
    when it passes the quality gate.
  - The module is idempotent. The parameters, a digest of the training data, the version of the
    C(mlops_model) package and the random seed form a fingerprint that is stored in the tag
    C(mlops.fingerprint) of the run and of the model version. When a version with the same
    fingerprint exists it is reused and nothing is trained or written.
  - Otherwise a RandomForestClassifier is trained on Iris (scikit-learn's bundled copy, no
    download), evaluated on a stratified holdout (accuracy, macro F1, confusion matrix),
    logged as an MLflow run (model serialized with skops, with signature and input example)
    and registered as a new version. The version gets the tag C(mlops.gate=passed) when its
    accuracy reaches O(min_accuracy), C(mlops.gate=failed) otherwise.
  - The alias moves to the version only when its accuracy is at least O(min_accuracy) and it
    is at least as accurate as the version holding the alias, or O(force=true).
  - Only Model Registry aliases are used, never the deprecated stages.
  - If registering fails after the run was logged, the run is deleted again.
author:
  - mlops-stack developers (@mlops-stack)
extends_documentation_fragment:
  - mlops.stack.mlflow
  - mlops.stack.mlflow.mlops_model
  - mlops.stack.mlflow.fast_path
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - A model that would be created is trained in memory to report its metrics; nothing is
        written to MLflow and RV(version) is V(null).
  diff_mode:
    support: full
  platform:
    platforms: posix
options:
  model_name:
    description:
      - Name of the registered model.
      - Letters, digits, V(.), V(_) and V(-); it starts with a letter or digit.
    type: str
    default: iris
  alias:
    description:
      - Alias that the version takes when it passes the gate, for example V(champion).
      - Must match C(^[A-Za-z][A-Za-z0-9_-]{0,254}$); V(latest) and C(v<digits>) are reserved
        by MLflow.
      - Set to V(null) or an empty string to register the version without moving any alias.
    type: str
    default: champion
  experiment_name:
    description:
      - MLflow experiment that holds the training runs. Defaults to O(model_name).
    type: str
  n_estimators:
    description: Number of trees of the forest (1 to 5000).
    type: int
    default: 100
  max_depth:
    description: Maximum depth of the trees, at least 1. Unlimited when not set.
    type: int
  min_samples_leaf:
    description: Minimum number of samples in a leaf, at least 1.
    type: int
    default: 1
  random_state:
    description: Seed of the forest and of the holdout split (0 to 4294967295).
    type: int
    default: 42
  test_size:
    description:
      - Share of the data held out for evaluation, greater than 0 and less than 0.9.
      - The stratified holdout must contain at least one sample of each class.
    type: float
    default: 0.2
  min_accuracy:
    description:
      - Minimum holdout accuracy (0 to 1) for the version to pass the gate and take the alias.
      - O(force) does not lower this bar.
    type: float
    default: 0.9
  force:
    description:
      - Move the alias even when the version is less accurate than the current holder.
      - The version still has to reach O(min_accuracy).
    type: bool
    default: false
notes:
  - Run the module with the interpreter of the MLflow host's venv, for example with
    C(ansible_python_interpreter), so that C(mlflow), C(scikit-learn) and C(mlops_model) import.
seealso:
  - module: mlops.stack.mlflow_model_info
"""

EXAMPLES = r"""
- name: Train the Iris model and promote it to champion if it passes the gate
  mlops.stack.mlflow_model:
    tracking_uri: http://127.0.0.1:5004
    model_name: iris
    alias: champion
    n_estimators: 100
    max_depth: 5
    min_accuracy: 0.9
  register: training

- name: Register a challenger without moving any alias
  mlops.stack.mlflow_model:
    tracking_uri: "{{ mlflow_url }}"
    alias: ""
    n_estimators: 300
    random_state: 7

- name: Force a less accurate version to champion (it must still reach min_accuracy)
  mlops.stack.mlflow_model:
    tracking_uri: "{{ mlflow_url }}"
    n_estimators: 10
    max_depth: 2
    min_accuracy: 0.8
    force: true
"""

RETURN = r"""
created:
  description: Whether a new version was trained and registered (would be, in check mode).
  returned: success
  type: bool
  sample: true
version:
  description:
    - Registered version trained with these parameters.
    - V(null) in check mode when the version does not exist yet.
  returned: success
  type: str
  sample: "3"
model_name:
  description: Name of the registered model.
  returned: success
  type: str
  sample: iris
model_uri:
  description: URI of the version, V(null) when RV(version) is V(null).
  returned: success
  type: str
  sample: models:/iris/3
run_id:
  description: MLflow run that trained the version; V(null) in check mode for a new version.
  returned: success
  type: str
  sample: 9c670a9b70e64da4bf5670cc9bfb58d3
metrics:
  description: Holdout metrics of the version.
  returned: success
  type: dict
  sample: {"accuracy": 0.9667, "f1_macro": 0.9666}
confusion_matrix:
  description: Holdout confusion matrix, rows are true classes (setosa, versicolor, virginica).
  returned: success
  type: list
  elements: list
  sample: [[10, 0, 0], [0, 9, 1], [0, 0, 10]]
fingerprint:
  description: sha256 of parameters, data digest, package version and seed.
  returned: success
  type: str
  sample: 34ec292f9b84730d8f9a18e8328064fbf8d3957800ddef9a4c781ad9a1eaa1f7
gate:
  description: V(passed) when the accuracy reaches O(min_accuracy) (tag C(mlops.gate)).
  returned: success
  type: str
  sample: passed
alias:
  description: The alias managed, V(null) when no alias is managed.
  returned: success
  type: str
  sample: champion
alias_before:
  description: Version that held the alias before the task, V(null) if none.
  returned: success
  type: str
  sample: "2"
alias_after:
  description:
    - Version that holds the alias after the task.
    - V(null) in check mode when a version that does not exist yet would take it.
  returned: success
  type: str
  sample: "3"
promoted:
  description: Whether the alias moved to this version (would move, in check mode).
  returned: success
  type: bool
  sample: true
reason:
  description: Why the alias moved or stayed.
  returned: success
  type: str
  sample: accuracy 0.9667 >= current holder's accuracy 0.9333
params:
  description: Training parameters after defaults.
  returned: success
  type: dict
  sample: {"n_estimators": 100, "max_depth": 5, "min_samples_leaf": 1, "random_state": 42,
           "test_size": 0.2}
check_mode:
  description: Whether the task ran in check mode.
  returned: success
  type: bool
  sample: false
"""

from typing import Any

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

NEW_VERSION = "(new version)"


def _diff(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    alias = result["alias"]
    created = result["created"]
    version = result["version"]
    after_holder = result["alias_after"]
    if result["promoted"] and after_holder is None:
        after_holder = NEW_VERSION
    return dict(
        before=dict(
            alias=alias, version=result["alias_before"], model_version=None if created else version
        ),
        after=dict(
            alias=alias,
            version=after_holder,
            model_version=version if version is not None else NEW_VERSION,
        ),
    )


def main() -> None:
    argument_spec = mlflow_argument_spec()
    argument_spec.update(
        model_name=dict(type="str", default="iris"),
        alias=dict(type="str", default="champion"),
        experiment_name=dict(type="str"),
        n_estimators=dict(type="int", default=100),
        max_depth=dict(type="int"),
        min_samples_leaf=dict(type="int", default=1),
        random_state=dict(type="int", default=42),
        test_size=dict(type="float", default=0.2),
        min_accuracy=dict(type="float", default=0.9),
        force=dict(type="bool", default=False),
        require_fast_path=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    check_requirements(module)
    params = module.params

    try:
        # validate everything before touching the network; messages name the option
        train_params = mlflow_common.TrainParams(
            n_estimators=params["n_estimators"],
            max_depth=params["max_depth"],
            min_samples_leaf=params["min_samples_leaf"],
            random_state=params["random_state"],
            test_size=params["test_size"],
        )
        mlflow_common.validate_model_name(params["model_name"])
        alias = mlflow_common.validate_alias(params["alias"])
        min_accuracy = mlflow_common.validate_min_accuracy(params["min_accuracy"])
        connection = connection_kwargs(module)

        result = mlflow_common.mlops_ensure.ensure_model(
            params["tracking_uri"],
            model_name=params["model_name"],
            alias=alias,
            params=train_params,
            min_accuracy=min_accuracy,
            force=params["force"],
            require_fast_path=params["require_fast_path"],
            check_mode=module.check_mode,
            experiment_name=params["experiment_name"],
            **connection,
        )
    except Exception as error:  # pylint: disable=broad-exception-caught
        fail_from_error(module, error, changed=False)

    if module._diff:
        result["diff"] = _diff(result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
