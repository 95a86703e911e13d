#!/usr/bin/env bash
# Run `ansible-test sanity` on the mlops.stack collection, offline-friendly.
#
#   scripts/sanity.sh [extra ansible-test sanity arguments, e.g. --test validate-modules]
#
# Two things make this more than a one-liner:
#  * Every sanity venv bootstraps pip with a "get-pip" script that ansible-test
#    downloads from ci-files.testing.ansible.com, a host that may be unreachable.
#    ansible-test first looks for a cached copy at ~/.ansible/test/cache/get_pip_<ver>.py
#    (expanduser, so $HOME decides). We point HOME at a project-local folder and put a
#    small stand-in there that runs pip from a pip wheel fetched with `pip download`
#    from the package index pip is configured for.
#  * ansible-test keeps one venv per sanity test below ~/.ansible/test/venv, named by
#    a hash of what it installs into it: HOME is the machine's project cache, so a
#    fresh clone reuses them and a changed requirement makes a new one.
#  * ansible-test must run inside ansible_collections/<namespace>/<name>. We run it on
#    a git-free copy under .work/, so its tests/output and caches never land in the
#    checkout and files other people are editing cannot change half-way through a run.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

PYTHON_VERSION="${SANITY_PYTHON:-3.11}"
COLLECTION="$ROOT/collections/ansible_collections/mlops/stack"
SANITY_ROOT="$WORK/sanity"
COPY="$SANITY_ROOT/ansible_collections/mlops/stack"
# HOME moves to a project-local folder; a per-user pip configuration stays in effect
if [[ -z "${PIP_CONFIG_FILE:-}" ]]; then
  for conf in "${XDG_CONFIG_HOME:-$HOME/.config}/pip/pip.conf" "$HOME/.pip/pip.conf"; do
    if [[ -f "$conf" ]]; then export PIP_CONFIG_FILE="$conf"; break; fi
  done
fi
export HOME="$MLOPS_CACHE/ansible-test-home"

# pip version of ansible-test's bootstrap (ansible_test/_internal/python_requirements.py)
PIP_VERSION="$("$VENV/bin/python" - <<'EOF'
import re
from pathlib import Path

import ansible_test

source = Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
match = re.search(r"default_packages = dict\(\s*pip='([^']+)'", source.read_text())
print(match.group(1) if match else "24.2")
EOF
)"
CACHE_DIR="$HOME/.ansible/test/cache"
STANDIN="$CACHE_DIR/get_pip_${PIP_VERSION//./_}.py"
WHEELS="$CACHE_DIR/pip-wheels"

prepare_get_pip() {
  mkdir -p "$CACHE_DIR" "$WHEELS"
  if ! compgen -G "$WHEELS/pip-${PIP_VERSION}-*.whl" >/dev/null; then
    log "fetching the pip ${PIP_VERSION} wheel for ansible-test's venv bootstrap"
    "$VENV/bin/pip" download --quiet --no-deps --only-binary=:all: \
      --dest "$WHEELS" "pip==${PIP_VERSION}"
  fi
  # The stand-in behaves like get-pip.py for ansible-test's call: it installs the pip
  # wheel (and whatever packages it is asked for) into the interpreter running it.
  cat >"$STANDIN.tmp" <<EOF
"""Stand-in for get-pip.py ${PIP_VERSION}, written by scripts/sanity.sh: runs pip from a local wheel."""
import glob
import os
import sys

wheels = sorted(glob.glob(os.path.join("$WHEELS", "pip-${PIP_VERSION}-*.whl")))
if not wheels:
    sys.exit("no pip ${PIP_VERSION} wheel in $WHEELS; rerun scripts/sanity.sh")
sys.path.insert(0, wheels[0])
from pip._internal.cli.main import main  # noqa: E402

# get-pip.py options that plain pip does not know
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--no-cache-dir", "--find-links", "$WHEELS", *args]))
EOF
  mv "$STANDIN.tmp" "$STANDIN"
}

copy_collection() {
  # a fresh copy each run, except tests/output where ansible-test keeps its caches
  mkdir -p "$COPY/tests"
  find "$COPY" -mindepth 1 -maxdepth 1 ! -name tests -exec rm -rf {} +
  find "$COPY/tests" -mindepth 1 -maxdepth 1 ! -name output -exec rm -rf {} +
  (cd "$COLLECTION" && tar --exclude=./tests/output --exclude=__pycache__ \
    --exclude=.pytest_cache --exclude='*.tar.gz' -cf - .) | (cd "$COPY" && tar -xf -)
}

prepare_get_pip
copy_collection
log "ansible-test sanity --python $PYTHON_VERSION --venv on a copy in ${COPY#"$ROOT"/}"
cd "$COPY"
# The copy lives inside this project's git work tree (in the ignored .work/), where
# ansible-test's upward search would find .git and list no files. Naming the content
# root stops the search: with no .git there, ansible-test walks the directory.
export ANSIBLE_TEST_CONTENT_ROOT="$COPY"
exec "$VENV/bin/ansible-test" sanity --python "$PYTHON_VERSION" --venv --color no "$@"
