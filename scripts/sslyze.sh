#!/usr/bin/env bash
# Run sslyze from a venv of its own ($MLOPS_CACHE/venvs/sslyze), created on first use:
# it pins an older cryptography than the project venv's Ansible wants.
#
#   scripts/sslyze.sh --mozilla_config=intermediate 127.0.0.1:8443
#   scripts/sslyze.sh --install-only
# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

SSLYZE_VERSION="6.3.1"
SSLYZE="$(tool_venv sslyze "sslyze==$SSLYZE_VERSION")/sslyze"
if [[ "${1:-}" == "--install-only" ]]; then exit 0; fi
exec "$SSLYZE" "$@"
