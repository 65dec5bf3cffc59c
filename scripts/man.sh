#!/usr/bin/env bash
# Generates the man pages of `ccrm` (one per subcommand) and `ccrm-bot` with clap_mangen
# into target/man/ (override with the first argument). View one with `man target/man/ccrm.1`;
# install with e.g. `install -m 0644 target/man/*.1 ~/.local/share/man/man1/`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:-target/man}"
cargo build --locked --quiet --bin ccrm --bin ccrm-bot
rm -rf "$out"
mkdir -p "$out"
target/debug/ccrm man "$out"
target/debug/ccrm-bot man "$out"
echo "man pages in $out: $(ls "$out" | wc -l) files (man $out/ccrm.1)"
