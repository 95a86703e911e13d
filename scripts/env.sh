# Sourced by every project script: one place for paths and the environment
# that keeps Ansible, molecule and podman state inside the project.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$ROOT/.work"
VENV="$ROOT/.venv"
export ANSIBLE_CONFIG="$ROOT/ansible.cfg"
export ANSIBLE_HOME="$WORK/ansible"
export XDG_CACHE_HOME="$WORK/cache"
export MOLECULE_GLOB="collections/ansible_collections/mlops/stack/roles/*/molecule/*/molecule.yml"
export CONTAINERS_CONF="$ROOT/scripts/containers.conf"
export MLOPS_NODE_IMAGE_FILE="$WORK/node-image"
export PATH="$VENV/bin:$PATH"
mkdir -p "$WORK" "$ANSIBLE_HOME" "$XDG_CACHE_HOME"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
