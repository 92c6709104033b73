#!/usr/bin/env bash
# Runs every fuzz target (or the ones named after the seconds) for SECONDS each, default 120,
# starting from the seeds in seeds/<target>/ and growing corpus/<target>/ (not committed).
# Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable toolchain RUSTC_BOOTSTRAP=1 lets
# it pass the -Z flags it needs. A crash leaves its input in artifacts/<target>/.
#
# `differential` is not a libFuzzer target: it is tests/differential.rs (portcullis in front of
# the registry's own request reading, tests/oracle) run with about 650 generated requests per
# second given (and a quarter as many with Bearer tokens) instead of the 20000 of
# scripts/test.sh. It needs Debian's golang-go and
# golang-github-docker-distribution-dev. A failure prints the seed to replay it with
# (PORTCULLIS_DIFF_SEED) and the minimal failing request.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-120}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(route authorization acl_loader users_loader token_query token_verify differential)
export RUSTC_BOOTSTRAP=1
for target in "${targets[@]}"; do
  echo "== $target (${seconds}s)"
  if [ "$target" = differential ]; then
    # Both property tests (Basic, and Bearer with a quarter of the cases), one after the other.
    (cd .. && RUST_BACKTRACE=0 PORTCULLIS_DIFF_CASES=$((seconds * 650)) cargo test -q \
      --test differential -- the_registry_acts_only_on_what_portcullis_authorized \
      --test-threads=1 --nocapture) || true
    continue
  fi
  mkdir -p "corpus/$target"
  cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 \
    | grep -E "^(#[0-9]+\s+DONE|Done|SUMMARY|==[0-9]+==)|panicked" || true
done
