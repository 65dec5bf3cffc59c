#!/usr/bin/env bash
# Sets up everything the tests need on a fresh machine, then runs the full check:
# formatting, the structure rules (module docs, file sizes, no module cycles), clippy
# (warnings are errors) and every test of the workspace.
# Installs when missing: tmux, python3 (stand-in fault child), Node.js/npm, Chromium and
# chromedriver (dashboard tests), systemd (for `systemd-analyze verify` of the service
# units), PostgreSQL (the bot suites' second backend), the pinned Claude
# Code CLI (scripts/install-claude.sh, cached in .tools/), and
# python3-venv for the pinned schemathesis and openapi-spec-validator of the REST contract
# test (scripts/install-contract-tools.sh, a venv cached in .tools/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing $* ..." >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >&2
}

command -v tmux >/dev/null || apt_install tmux
command -v python3 >/dev/null || apt_install python3
command -v npm >/dev/null || apt_install nodejs npm
# The dashboard's browser tests drive Debian's Chromium through its chromedriver.
{ command -v chromium >/dev/null && command -v chromedriver >/dev/null; } ||
  apt_install chromium chromium-driver
command -v systemd-analyze >/dev/null || apt_install systemd
# The bot suites run a second time on a throwaway PostgreSQL cluster (testkit::PgCluster
# runs Debian's initdb/postgres from /usr/lib/postgresql/*/bin as the postgres user).
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || apt_install postgresql
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv

CCRM_CLAUDE_BIN="$(scripts/install-claude.sh)"
export CCRM_CLAUDE_BIN
echo "claude: $CCRM_CLAUDE_BIN ($("$CCRM_CLAUDE_BIN" --version))"
CCRM_CONTRACT_TOOLS="$(scripts/install-contract-tools.sh)"
export CCRM_CONTRACT_TOOLS
echo "contract tools: $CCRM_CONTRACT_TOOLS ($("$CCRM_CONTRACT_TOOLS/schemathesis" --version))"

cargo fmt --all --check
python3 scripts/check-structure.py
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-fail-fast
# The store, REST, SSE and end-to-end suites again on PostgreSQL (the replica tests in
# bot/tests/replicas.rs start their own cluster in the run above).
CCRM_TEST_DB=postgres cargo test -p ccrm-bot --locked --test db --test api --test e2e --test chat_once
