#!/usr/bin/env bash
# Installs the pinned Claude Code CLI (version in ./CLAUDE_VERSION) from npm into a
# git-ignored folder keyed by version, reuses it when present, and prints the binary path.
# Usage: scripts/install-claude.sh            -> prints /abs/path/to/claude
#        CCRM_TOOLS_DIR=/somewhere scripts/install-claude.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="$(tr -d '[:space:]' < "$root/CLAUDE_VERSION")"
tools="${CCRM_TOOLS_DIR:-$root/.tools}"
prefix="$tools/claude-code-$version"
bin="$prefix/node_modules/.bin/claude"
# One installer at a time (test binaries may call this at once): the first installs, the
# others wait for it and reuse what it installed (never a half-done install).
mkdir -p "$tools"
exec 9>"$tools/.claude-install.lock"
flock 9
if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "$version"; then
  echo "$bin"
  exit 0
fi
command -v npm >/dev/null || { echo "npm is required to install the Claude Code CLI (apt-get install npm)" >&2; exit 1; }
echo "installing @anthropic-ai/claude-code@$version into $prefix (one time, ~370 MB)..." >&2
rm -rf "$prefix.tmp"
mkdir -p "$prefix.tmp"
npm install --prefix "$prefix.tmp" --no-audit --no-fund --loglevel=error \
  "@anthropic-ai/claude-code@$version" >&2
rm -rf "$prefix"
mv "$prefix.tmp" "$prefix"
# npm's .bin links are relative, so they survive the rename.
if ! "$bin" --version 2>/dev/null | grep -q "$version"; then
  echo "installed claude does not report version $version" >&2
  exit 1
fi
echo "$bin"
