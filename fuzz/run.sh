#!/usr/bin/env bash
# Runs every fuzz target (or the ones named after the seconds) for SECONDS each, default 120,
# starting from the seeds in seeds/<target>/ and growing corpus/<target>/ (not committed).
# Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable toolchain RUSTC_BOOTSTRAP=1 lets
# it pass the -Z flags it needs. A crash leaves its input in artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-120}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(route authorization acl_loader users_loader token_query token_verify)
export RUSTC_BOOTSTRAP=1
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  echo "== $target (${seconds}s)"
  cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 \
    | grep -E "^(#[0-9]+\s+DONE|Done|SUMMARY|==[0-9]+==)|panicked" || true
done
