#!/usr/bin/env bash
# Sets up and runs the main job: installs the pinned Claude Code CLI when missing, builds
# the release binaries, and runs ccrmd in the foreground (Ctrl-C stops it and every
# session). Drive it from another terminal with target/release/ccrm.
# Needs ANTHROPIC_API_KEY (or a logged-in claude) for real sessions.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v npm >/dev/null || { echo "npm is required (apt-get install nodejs npm)" >&2; exit 1; }
CCRM_CLAUDE_BIN="${CCRM_CLAUDE_BIN:-$(scripts/install-claude.sh)}"
export CCRM_CLAUDE_BIN
cargo build --release --locked --bins
echo "ccrmd starting; in another terminal: $(pwd)/target/release/ccrm start && $(pwd)/target/release/ccrm list" >&2
exec target/release/ccrmd "$@"
