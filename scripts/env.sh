# Sourced by every project script: one place for paths and the environment
# that keeps Ansible, molecule and podman state inside the project.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$ROOT/.work"
VENV="$ROOT/.venv"
export ANSIBLE_CONFIG="$ROOT/ansible.cfg"
export ANSIBLE_HOME="$WORK/ansible"
export XDG_CACHE_HOME="$WORK/cache"
# What is slow to fetch and the same for every checkout (pip's downloads, the
# node wheelhouse, the inference clients' venv, the venvs of checkov and sslyze) is kept per machine, outside the work tree, so a fresh
# clone (CI) reuses it; anything missing there is fetched again.
export MLOPS_CACHE="${MLOPS_CACHE:-${HOME:-/root}/.cache/mlops-stack}"
export PIP_CACHE_DIR="$MLOPS_CACHE/pip"
export CONTAINERS_CONF="$ROOT/scripts/containers.conf"
export MLOPS_NODE_IMAGE_FILE="$WORK/node-image"
export MLOPS_ROOT="$ROOT"
export PATH="$VENV/bin:$WORK/tools/bin:$PATH"
mkdir -p "$WORK" "$ANSIBLE_HOME" "$XDG_CACHE_HOME" "$MLOPS_CACHE"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# pip reads this machine's own configuration; drop its noise about index
# folders that do not exist, keep everything else.
quiet_pip() { "$VENV/bin/pip" "$@" 2> >(grep -v "^WARNING: Location '" >&2); }

# A tool that must not share the project venv (its pins clash with ours):
# a venv of its own in $MLOPS_CACHE/venvs/NAME, kept per machine like the
# wheelhouse (a fresh clone reuses it) and built again when the wanted version
# changes or a build stopped half-way (the stamp is written last). A lock
# keeps two checkouts from building it at once. Prints the venv's bin folder.
tool_venv() {
  local name="$1" requirement="$2" venv="$MLOPS_CACHE/venvs/$1"
  local stamp="$venv/.requirement"
  mkdir -p "$MLOPS_CACHE/venvs"
  (
    flock 9
    if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$requirement" ]]; then
      exit 0
    fi
    log "installing $requirement into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip 2> >(grep -v "^WARNING: Location '" >&2)
    "$venv/bin/pip" install -q "$requirement" 2> >(grep -v "^WARNING: Location '" >&2)
    echo "$requirement" > "$stamp"
  ) 9> "$MLOPS_CACHE/venvs/$name.lock" >&2
  echo "$venv/bin"
}
