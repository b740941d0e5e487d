#!/usr/bin/env bash
# Run each fuzz target for a given time (seconds, default 600): `scripts/fuzz.sh 600`.
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Not part of CI. Findings land in
# fuzz/artifacts/<target>/; corpora in fuzz/corpus/<target>/ (both ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
# cargo-fuzz passes unstable flags; this lets a stable toolchain accept them for this build.
export RUSTC_BOOTSTRAP=1
for target in command job; do
  mkdir -p "fuzz/corpus/$target"
  cargo fuzz run --sanitizer none "$target" "fuzz/corpus/$target" -- -max_total_time="$seconds" -max_len=4096 \
    2>&1 | tee "fuzz/$target.log" | grep -E "^#[0-9]+ +(DONE|pulse)|ERROR|panicked" || true
  tail -n 3 "fuzz/$target.log"
done
