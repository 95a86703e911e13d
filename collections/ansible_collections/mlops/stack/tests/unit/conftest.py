"""Fixtures for the module tests: a real MLflow server and a way to run modules like Ansible does.

The modules are run with the ``ansible`` ad-hoc command (JSON stdout callback) against
localhost, with the project venv's Python as ``ansible_python_interpreter``; MLflow is
a real ``mlflow server`` started by the project's ``tests/conftest.py``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

COLLECTIONS = Path(__file__).resolve().parents[5]  # .../collections
PROJECT = COLLECTIONS.parent
PROJECT_CONFTEST = PROJECT / "tests" / "conftest.py"
ANSIBLE = Path(sys.executable).with_name("ansible")


def _load_project_conftest():
    if not PROJECT_CONFTEST.is_file():
        return None
    spec = importlib.util.spec_from_file_location("mlops_project_conftest", PROJECT_CONFTEST)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_project = _load_project_conftest()


@pytest.fixture(scope="session")
def mlflow_url(tmp_path_factory):
    """URL of a real MLflow server (the project's MlflowServer helper)."""
    if _project is None:
        pytest.skip(f"needs the project's real-MLflow fixture {PROJECT_CONFTEST}")
    server = _project.MlflowServer(tmp_path_factory.mktemp("mlflow-modules"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def model_name(request):
    """A registered-model name no other test uses."""
    return "mod-" + "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]


@pytest.fixture(scope="session")
def ansible_env(tmp_path_factory):
    if not ANSIBLE.exists():
        pytest.skip(f"ansible is not installed next to {sys.executable}")
    home = tmp_path_factory.mktemp("ansible-home")
    env = dict(os.environ)
    config = PROJECT / "ansible.cfg"
    if config.is_file():
        env["ANSIBLE_CONFIG"] = str(config)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
        ANSIBLE_HOME=str(home),
        ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_DEPRECATION_WARNINGS="false",
        ANSIBLE_NOCOLOR="1",
    )
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


class ModuleRunner:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, module: str, args: dict, *flags: str, python: str = sys.executable) -> dict:
        """Run ``module`` on localhost and return its task result."""
        command = [
            str(ANSIBLE),
            "localhost",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-m",
            f"mlops.stack.{module}",
            "-a",
            json.dumps(args),
            "-e",
            f"ansible_python_interpreter={python}",
            *flags,
        ]
        done = subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=300, check=False
        )
        try:
            report = json.loads(done.stdout)
            return report["plays"][0]["tasks"][0]["hosts"]["localhost"]
        except (ValueError, KeyError, IndexError):
            raise AssertionError(
                f"ansible gave no JSON result (rc {done.returncode})\n"
                f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
            ) from None


@pytest.fixture(scope="session")
def run_module(ansible_env):
    return ModuleRunner(ansible_env)


@pytest.fixture(scope="session")
def python_without_mlflow(tmp_path_factory):
    """An interpreter lacking mlflow: /usr/bin/python3 if so, else a bare venv."""
    probe = "import importlib.util as u, sys; sys.exit(u.find_spec('mlflow') is not None)"
    system = shutil.which("python3", path="/usr/bin")
    if system and subprocess.run([system, "-c", probe], check=False).returncode == 0:
        return system
    venv = tmp_path_factory.mktemp("no-mlflow") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return str(venv / "bin" / "python")
