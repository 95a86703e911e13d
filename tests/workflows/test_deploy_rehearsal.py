"""The deploy workflow's first steps, as far as they run without Google, the
way a GitHub runner runs them: an unprivileged user without a sudo password,
a fresh venv from requirements.txt alone (`pip install -r requirements.txt`),
and the play that builds the model wheel on the controller (it runs with
`become: true`, as playbooks/mlflow.yml and predictor.yml do)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.gcp import ROOT, constructed_inventory

RUNNER = "mlops-runner"


def as_runner(*command: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    home = pwd.getpwnam(RUNNER).pw_dir
    env = {
        "HOME": home,
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        # the machine's own pip configuration (index, proxy CA) stays in force
        **{k: v for k, v in os.environ.items() if k.startswith(("PIP_", "SSL_", "REQUESTS_CA"))},
    }
    return subprocess.run(
        ["/usr/sbin/runuser", "-u", RUNNER, "--", *command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def checkout() -> Iterator[Path]:
    """The tracked files, owned by an unprivileged user, as actions/checkout
    leaves them, in that user's home."""
    if os.geteuid() != 0:
        pytest.fail("this rehearsal creates an unprivileged user: run the suite as root")
    try:
        pwd.getpwnam(RUNNER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", RUNNER], check=True)
    root = Path(tempfile.mkdtemp(prefix="deploy-", dir=pwd.getpwnam(RUNNER).pw_dir))
    work = root / "repo"
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, text=True
    ).stdout.split("\0")
    for name in filter(None, files):
        source = ROOT / name
        target = work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        elif source.is_file():
            shutil.copy2(source, target)
    subprocess.run(["chown", "-R", f"{RUNNER}:{RUNNER}", str(root)], check=True)
    yield work
    shutil.rmtree(root)


@pytest.fixture(scope="module")
def runner_venv(checkout: Path) -> Path:
    """`pip install -r requirements.txt` into a fresh venv, nothing else."""
    venv = checkout.parent / "venv"
    created = as_runner("python3", "-m", "venv", str(venv), cwd=checkout)
    assert created.returncode == 0, created.stderr
    install = as_runner(
        str(venv / "bin" / "pip"), "install", "-q", "-r", "requirements.txt", cwd=checkout
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    return venv


def test_the_wheel_builds_as_an_unprivileged_user_from_requirements_txt(
    checkout: Path, runner_venv: Path
) -> None:
    inventory = constructed_inventory(checkout.parent)
    subprocess.run(["chown", "-R", f"{RUNNER}:{RUNNER}", str(inventory)], check=True)
    play = checkout / "playbooks" / "rehearse_wheel.yml"
    play.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Build the model wheel as the MLflow play does",
                    "hosts": "mlflow",
                    "become": True,
                    "gather_facts": False,
                    "roles": [{"role": "model_wheel"}],
                }
            ]
        )
    )
    shutil.chown(play, RUNNER, RUNNER)
    run = as_runner(
        str(runner_venv / "bin" / "ansible-playbook"),
        "-i",
        str(inventory),
        str(play),
        cwd=checkout,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    wheels = list((checkout / ".work" / "dist").glob("mlops_model-*.whl"))
    assert len(wheels) == 1, output[-2000:]
    assert wheels[0].stat().st_uid == pwd.getpwnam(RUNNER).pw_uid, "built by someone else"
    leftovers = [p for p in (checkout / "model").rglob("*") if p.stat().st_uid == 0]
    assert not leftovers, f"root-owned build output: {leftovers[:5]}"
