#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60), then minimises its
# corpus (fuzz/corpus/<target>, committed) and prints execs/s and corpus size per target.
# Not part of CI (it needs the nightly toolchain and minutes per target).
# Installs cargo-fuzz from crates.io when missing. A crash stops the run and names the input
# saved under fuzz/artifacts/<target>/; turn it into a regular unit test before fixing it.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs="${1:-60}"
shift || true

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "cargo fuzz needs the nightly toolchain: rustup toolchain install nightly" >&2
  exit 1
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

cd fuzz
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
echo "building ${#targets[@]} targets (release, sanitizer) ..." >&2
cargo +nightly fuzz build -O >&2

printf '%-14s %10s %12s %8s %10s\n' target seconds execs/s files bytes
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log="$(mktemp)"
  if ! cargo +nightly fuzz run -O "$t" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "CRASH in $t: see fuzz/artifacts/$t/" >&2
    exit 1
  fi
  rate="$(grep -Eo 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo '?')"
  cargo +nightly fuzz cmin -O "$t" >/dev/null 2>&1 || echo "cmin of $t failed; corpus left as is" >&2
  files="$(find "corpus/$t" -type f | wc -l)"
  bytes="$(find "corpus/$t" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')"
  printf '%-14s %10s %12s %8s %10s\n' "$t" "$secs" "$rate" "$files" "$bytes"
  rm -f "$log"
done
