#!/usr/bin/env bash
# Sets up and runs the main job: installs the pinned Claude Code CLI when missing, builds
# the release binaries, then `ccrm up`: ccrm-bot (REST API, hub, SQLite in the XDG data
# dir) and ccrmd wired together, printing the API URL and token. Ctrl-C stops both.
#   scripts/run.sh            real sessions (needs ANTHROPIC_API_KEY or a logged-in claude)
#   scripts/run.sh --demo     a scripted demo model instead of Claude (no account needed)
# Other flags go to `ccrm up` (see `target/release/ccrm up --help`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v npm >/dev/null || { echo "npm is required (apt-get install nodejs npm)" >&2; exit 1; }
CCRM_CLAUDE_BIN="${CCRM_CLAUDE_BIN:-$(scripts/install-claude.sh)}"
export CCRM_CLAUDE_BIN
cargo build --release --locked --bins
exec target/release/ccrm up "$@"
