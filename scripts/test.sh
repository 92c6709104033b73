#!/usr/bin/env bash
# The whole test suite: installs the real components the tests run (Debian's docker-registry,
# skopeo, slapd, curl) when they are missing, then runs `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake gcc pkg-config docker-registry skopeo slapd ldap-utils curl openssl ca-certificates)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
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

cargo test --all-targets "$@"
