#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mlops-stack developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlflow_alias
short_description: Point an alias of a registered model at a version, or remove it
version_added: "0.1.0"
description:
  - Ensures that the alias O(alias) of the registered model O(model_name) points at the existing
    version O(version) (O(state=present)), or that the model has no such alias
    (O(state=absent)).
  - Promotes or rolls back without training anything; the version must already be registered,
    for example by M(mlops.stack.mlflow_model).
  - Idempotent. RV(changed) is V(true) only when the alias moved, was created or was removed.
  - Only Model Registry aliases are used, never the deprecated stages.
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
      - Reads the alias and the version and reports whether the alias would change; nothing is
        written to MLflow.
  diff_mode:
    support: full
    details:
      - The version the alias points at before and after the task, V(null) for no version.
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
      - The alias, for example V(champion).
      - Must match C(^[A-Za-z][A-Za-z0-9_-]{0,254}$); V(latest) and C(v<digits>) are reserved
        by MLflow.
    type: str
    required: true
  version:
    description:
      - Registered version number the alias points at, for example V(3).
      - Required with O(state=present); the module fails, naming the version, when the model
        has no such version.
      - With O(state=absent), the alias is removed only when it points at this version; when
        not set, whatever version it points at.
    type: str
  state:
    description:
      - V(present) points the alias at O(version); V(absent) removes the alias.
      - Removing an alias of a model that is not registered changes nothing.
    type: str
    choices: [present, absent]
    default: present
  require_gate:
    description:
      - With O(state=present), refuse a version whose tag C(mlops.gate) is not V(passed) (set by
        M(mlops.stack.mlflow_model) when the version reached its minimum accuracy).
      - Set to V(false) to move the alias back to a version that held it before, whatever its
        gate says.
    type: bool
    default: true
notes:
  - Run the module with the interpreter of the MLflow host's venv, for example with
    C(ansible_python_interpreter), so that C(mlflow), C(scikit-learn) and C(mlops_model) import.
seealso:
  - module: mlops.stack.mlflow_model
  - module: mlops.stack.mlflow_model_info
"""

EXAMPLES = r"""
- name: Promote version 3 of the Iris model to champion
  mlops.stack.mlflow_alias:
    tracking_uri: http://127.0.0.1:5004
    model_name: iris
    alias: champion
    version: "3"
  register: promotion

- name: Roll back to the version that held the alias before, even if it failed the gate
  mlops.stack.mlflow_alias:
    tracking_uri: http://127.0.0.1:5004
    alias: champion
    version: "{{ promotion.previous_version }}"
    require_gate: false
  when: promotion.previous_version is not none

- name: Remove the challenger alias if it still points at version 2
  mlops.stack.mlflow_alias:
    tracking_uri: http://127.0.0.1:5004
    alias: challenger
    version: "2"
    state: absent
"""

RETURN = r"""
changed:
  description: Whether the alias moved, was created or was removed (would be, in check mode).
  returned: always
  type: bool
  sample: true
model_name:
  description: Name of the registered model.
  returned: success
  type: str
  sample: iris
alias:
  description: The alias.
  returned: success
  type: str
  sample: champion
version:
  description:
    - Version the alias points at after the task (would point at, in check mode).
    - V(null) when the model has no such alias.
  returned: success
  type: str
  sample: "3"
previous_version:
  description: Version the alias pointed at before the task, V(null) if none.
  returned: success
  type: str
  sample: "2"
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


def _ensure(module: AnsibleModule) -> dict[str, Any]:
    params = module.params
    # validate everything before touching the network; messages name the option
    model_name = mlflow_common.validate_model_name(params["model_name"])
    alias = mlflow_common.validate_alias(params["alias"])
    if alias is None:
        raise mlflow_common.InvalidParameter("alias", "alias must not be empty")
    version = params["version"]
    if version is not None:
        version = mlflow_common.validate_version(version)
    connection = connection_kwargs(module)

    if params["state"] == "present":
        result = mlflow_common.mlops_ensure.set_alias(
            params["tracking_uri"],
            model_name,
            alias,
            version,
            check_mode=module.check_mode,
            require_gate=params["require_gate"],
            require_fast_path=params["require_fast_path"],
            **connection,
        )
    else:
        result = mlflow_common.mlops_ensure.remove_alias(
            params["tracking_uri"],
            model_name,
            alias,
            version,
            check_mode=module.check_mode,
            **connection,
        )
    return dict(
        changed=result["changed"],
        model_name=result["model_name"],
        alias=result["alias"],
        version=result["alias_after"],
        previous_version=result["alias_before"],
    )


def main() -> None:
    argument_spec = mlflow_argument_spec()
    argument_spec.update(
        model_name=dict(type="str", default="iris"),
        alias=dict(type="str", required=True),
        version=dict(type="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        require_gate=dict(type="bool", default=True),
        require_fast_path=dict(type="bool", default=False),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        required_if=[("state", "present", ["version"])],
        supports_check_mode=True,
    )
    check_requirements(module)

    try:
        result = _ensure(module)
    except Exception as error:  # pylint: disable=broad-exception-caught
        fail_from_error(module, error, changed=False)

    if module._diff:
        result["diff"] = dict(
            before=dict(alias=result["alias"], version=result["previous_version"]),
            after=dict(alias=result["alias"], version=result["version"]),
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
