#!/usr/bin/env bash
# The whole test suite: installs the real components the tests run (Debian's docker-registry,
# skopeo, slapd, curl; docker-compose, systemd-analyze and kubernetes-validate for the
# deployment checks; haproxy for the rolling-restart and cluster tests; redis-server and
# redis-tools for the cluster tests (tests/cluster.rs); prometheus for its `promtool check
# metrics` on the proxy's /metrics; chromium, node and playwright-core for the web UI's browser
# test; oidc-provider for the single sign-on tests; Go and the registry's Go
# sources for the differential test's oracle) when they are missing, then
# runs `cargo test`. The differential test sends PORTCULLIS_DIFF_CASES requests (20000 unless
# set; fuzz/run.sh runs it longer).
set -euo pipefail
cd "$(dirname "$0")/.."

# golang-go and golang-github-docker-distribution-dev build tests/oracle, the registry's own
# request reading for the differential test (tests/differential.rs).
packages=(cmake gcc pkg-config docker-registry skopeo slapd ldap-utils curl openssl ca-certificates
          docker-compose systemd python3-pip chromium golang-go golang-github-docker-distribution-dev
          prometheus)
# haproxy: the load balancer of the rolling-restart and cluster tests (tests/rolling_restart.rs,
# tests/cluster.rs) and the `haproxy -c` check of deploy/haproxy.cfg.
packages+=(haproxy)
# redis-server (and its redis-cli, in redis-tools): the shared Redis of the cluster tests.
packages+=(redis-server redis-tools)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm by command: an image's own Node.js build (which ships npm) must not be replaced.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  . "$HOME/.cargo/env"
fi

if ! command -v kubernetes-validate >/dev/null; then
  python3 -m pip install -q kubernetes-validate 2>/dev/null \
    || python3 -m pip install -q --user --break-system-packages kubernetes-validate
  export PATH="$HOME/.local/bin:$PATH"
fi
# The web UI's browser test (tests/ui.rs) drives Debian's chromium with playwright-core from
# npm; PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD keeps it from ever fetching a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if [ ! -f tests/ui-e2e/node_modules/playwright-core/package.json ] \
   || [ tests/ui-e2e/package-lock.json -nt tests/ui-e2e/node_modules/.package-lock.json ]; then
  (cd tests/ui-e2e && npm ci --no-audit --no-fund --loglevel=error)
fi
# The single sign-on tests (tests/sso.rs) run a real OpenID provider: oidc-provider from npm.
if [ ! -f tests/oidc-provider/node_modules/oidc-provider/package.json ] \
   || [ tests/oidc-provider/package-lock.json -nt tests/oidc-provider/node_modules/.package-lock.json ]; then
  (cd tests/oidc-provider && npm ci --no-audit --no-fund --loglevel=error)
fi

# Here every tool is installed, so a deployment check that cannot find one must fail.
export PORTCULLIS_REQUIRE_DEPLOY_TOOLS=1

# One closing line for the whole run: cargo prints a summary per test binary, the last of
# which (a binary without tests) says "0 passed".
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --all-targets "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# Every doc comment's links resolve (the docs are read with private items: module maps link to
# their private parts).
set +e
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --document-private-items --quiet
docs=$?
set -e
[ "$docs" -eq 0 ] || echo "cargo doc: broken doc links (above)"
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) g += $i } }
     END { printf "summary: %d passed, %d failed, %d skipped\n", p, f, g }' "$log"
[ "$status" -ne 0 ] && exit "$status"
exit "$docs"
