"""mlops.stack's network filters: as Python, and as a template in Ansible uses them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.mlops.stack.plugins.filter import network

COLLECTIONS = Path(__file__).resolve().parents[7]


@pytest.mark.parametrize(
    ("address", "host", "port", "probe"),
    [
        ("0.0.0.0:9100", "0.0.0.0", 9100, "127.0.0.1"),
        (":9100", "", 9100, "127.0.0.1"),
        ("[::]:9090", "::", 9090, "127.0.0.1"),
        ("10.0.0.5:9090", "10.0.0.5", 9090, "10.0.0.5"),
        ("[fd00::5]:9090", "fd00::5", 9090, "[fd00::5]"),
        ("monitor-1:9090", "monitor-1", 9090, "monitor-1"),
    ],
)
def test_listen_address_halves_and_probe_host(address: str, host: str, port: int, probe: str):
    assert network.listen_host(address) == host
    assert network.listen_port(address) == port
    assert network.probe_host(network.listen_host(address)) == probe


@pytest.mark.parametrize("address", ["0.0.0.0", "9100", "host:port", ""])
def test_a_listen_address_without_a_port_is_refused(address: str):
    with pytest.raises(ValueError, match="HOST:PORT"):
        network.listen_port(address)


@pytest.mark.parametrize(
    ("host", "probe"),
    [("", "127.0.0.1"), ("*", "127.0.0.1"), ("::", "127.0.0.1"), ("fd00::7", "[fd00::7]"),
     ("[fd00::7]", "[fd00::7]"), ("192.168.1.2", "192.168.1.2")],
)  # fmt: skip
def test_probe_host_of_a_bare_host(host: str, probe: str):
    assert network.probe_host(host) == probe


def test_node_address_prefers_the_node_address_then_ansible_host_then_the_name():
    both = {"mlops_node_address": "10.0.0.2", "ansible_host": "127.0.0.1"}
    assert network.node_address(both, "mlflow-1") == "10.0.0.2"
    assert network.node_address({"ansible_host": "127.0.0.1"}, "mlflow-1") == "127.0.0.1"
    assert network.node_address({}, "mlflow-1") == "mlflow-1"
    assert network.node_address({"mlops_node_address": ""}, "mlflow-1") == "mlflow-1"


def test_the_filters_work_in_a_template(tmp_path: Path):
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
        "mlflow-1 mlops_node_address=10.0.0.2 ansible_host=127.0.0.1\n"
    )
    expression = (
        "{{ [hostvars['mlflow-1'] | mlops.stack.node_address('mlflow-1'),"
        " '[fd00::1]:9090' | mlops.stack.listen_host | mlops.stack.probe_host,"
        " '0.0.0.0:9100' | mlops.stack.listen_port] }}"
    )
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_HOME": str(tmp_path / "ansible"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
    }
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("ansible")), "localhost", "-i", str(inventory),
         "-m", "ansible.builtin.debug", "-a", f"msg={expression}"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    assert result["msg"] == ["10.0.0.2", "[fd00::1]", 9100]


def test_subject_alt_names_types_each_name_and_drops_duplicates() -> None:
    names = ["gateway-1", "10.0.0.7", "[fd00::7]", "localhost", "127.0.0.1", "10.0.0.7"]
    assert network.subject_alt_names(names) == [
        "DNS:gateway-1",
        "DNS:localhost",
        "IP:10.0.0.7",
        "IP:127.0.0.1",
        "IP:fd00::7",
    ]


def test_subject_alt_names_do_not_depend_on_the_order_of_the_names() -> None:
    lab = ["gateway-1", "gateway-1", "127.0.0.1", "localhost", "127.0.0.1"]
    gcp = ["gateway-1", "localhost", "127.0.0.1"]
    assert network.subject_alt_names(lab) == network.subject_alt_names(gcp)
