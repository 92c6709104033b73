#!/usr/bin/env bash
# One command from a fresh Debian machine to portcullis in front of a local registry:
# installs what is missing, makes development certificates, starts Debian's registry:2 on
# 127.0.0.1:5001 (no auth of its own) and portcullis on https://127.0.0.1:5000 with the example
# proxy.yaml, users.yaml and acl/. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake gcc pkg-config docker-registry openssl curl ca-certificates)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if ! command -v cargo >/dev/null; then
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  . "$HOME/.cargo/env"
fi

certs/make-dev-certs.sh
cargo build --release

state=.quickstart
mkdir -p "$state/data"
cat > "$state/registry.yml" <<YAML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $PWD/$state/data}
  delete: {enabled: true}
http:
  addr: 127.0.0.1:5001
YAML
docker-registry serve "$state/registry.yml" > "$state/registry.log" 2>&1 &
registry_pid=$!
trap 'kill $registry_pid 2>/dev/null' EXIT
until curl -fs http://127.0.0.1:5001/v2/ >/dev/null; do sleep 0.2; done
echo "registry:2 on 127.0.0.1:5001 (log: $state/registry.log); portcullis on https://127.0.0.1:5000,"
echo "metrics on http://127.0.0.1:9100/metrics. Users: admin/badmin (everything), test/123 (pull only)."
echo "try: curl --cacert certs/ca.pem -u admin:badmin https://127.0.0.1:5000/v2/_catalog"
./target/release/portcullis serve -c proxy.yaml --log-format text
