#!/usr/bin/env bash
# Installs the pinned API-contract tools from PyPI (schemathesis and openapi-spec-validator,
# versions below) into a venv in a git-ignored folder keyed by those versions, reuses it
# when present, and prints the venv's bin directory.
# Usage: scripts/install-contract-tools.sh            -> prints /abs/path/to/venv/bin
#        CCRM_TOOLS_DIR=/somewhere scripts/install-contract-tools.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
schemathesis=4.32.5
validator=0.9.0
tools="${CCRM_TOOLS_DIR:-$root/.tools}"
venv="$tools/contract-st$schemathesis-osv$validator"
# One installer at a time (contract tests may call this at once): the first installs, the
# others wait for it and reuse what it built (never a half-done install).
mkdir -p "$tools"
exec 9>"$tools/.contract-tools.lock"
flock 9
if [ -x "$venv/bin/schemathesis" ] && [ -x "$venv/bin/openapi-spec-validator" ]; then
  echo "$venv/bin"
  exit 0
fi
python3 -c 'import venv, ensurepip' 2>/dev/null ||
  { echo "python3 with venv is required (apt-get install python3-venv)" >&2; exit 1; }
echo "installing schemathesis==$schemathesis openapi-spec-validator==$validator into $venv (one time)..." >&2
# A venv's scripts name their interpreter by absolute path, so it is built in place; a
# failed install leaves nothing that looks finished.
rm -rf "$venv"
python3 -m venv "$venv"
if ! "$venv/bin/pip" install --quiet --disable-pip-version-check \
  "schemathesis==$schemathesis" "openapi-spec-validator==$validator" >&2; then
  rm -rf "$venv"
  exit 1
fi
"$venv/bin/schemathesis" --version >&2
echo "$venv/bin"
