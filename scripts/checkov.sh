#!/usr/bin/env bash
# Run checkov from a venv of its own ($MLOPS_CACHE/venvs/checkov), created on first
# use. checkov ships its own `hcl2` and `detect_secrets` modules and pins
# `packaging`, so it must never share the project venv.
#
#   scripts/checkov.sh                      # scan terraform/, human output
#   scripts/checkov.sh -o json              # extra arguments go to checkov
#   scripts/checkov.sh --install-only       # just make sure it is installed
# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

CHECKOV_VERSION="3.3.30"
CHECKOV="$(tool_venv checkov "checkov==$CHECKOV_VERSION")/checkov"
if [[ "${1:-}" == "--install-only" ]]; then exit 0; fi

# No network for policies (--skip-download), one line per check, no banner.
# The directory scanned is terraform/ unless the caller passes -d/-f itself.
args=(--skip-download --compact --quiet)
case " $* " in
  *" -d "* | *" --directory "* | *" -f "* | *" --file "*) ;;
  *) args+=(-d "$ROOT/terraform") ;;
esac
# checkov's own "(re)downloading" of guidelines and version checks stay off
export BC_SKIP_MAPPING=TRUE CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false
exec "$CHECKOV" "${args[@]}" "$@"
