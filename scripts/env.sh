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
# node wheelhouse, the inference clients' venv) is kept per machine, outside the work tree, so a fresh
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
# a venv of its own in .work/venvs/NAME, (re)built when the wanted version
# changes. Prints the venv's bin folder.
tool_venv() {
  local name="$1" requirement="$2" venv="$WORK/venvs/$1"
  local stamp="$venv/.requirement"
  if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$requirement" ]]; then
    echo "$venv/bin"
    return 0
  fi
  log "installing $requirement into ${venv#"$ROOT/"}"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip 2> >(grep -v "^WARNING: Location '" >&2)
  "$venv/bin/pip" install -q "$requirement" 2> >(grep -v "^WARNING: Location '" >&2)
  echo "$requirement" > "$stamp"
  echo "$venv/bin"
}
