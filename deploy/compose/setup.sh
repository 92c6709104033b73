#!/usr/bin/env bash
# Makes the development secrets deploy/compose.yaml mounts, in deploy/compose/secrets/:
#   ca.pem, server.pem, server.key   TLS for localhost / 127.0.0.1 (certs/make-dev-certs.sh)
#   token.key, token.crt              EC P-256 token signing key and its self-signed certificate
#   ldap-bind.pw                      the seed directory's service account password
#   haproxy.pem                       server.pem followed by server.key, for HAProxy (the
#                                     `cluster` profile), remade when either changes
# and deploy/.env with PORTCULLIS_USER=<your uid>:<your gid>, so the container can read them
# (run as root, it gives the files to the image's uid 10001 instead).
# Existing files are kept. Never use these in production.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
secrets="$here/secrets"
mkdir -p "$secrets"
chmod 700 "$secrets"
umask 077

if [ ! -f "$secrets/server.pem" ] || [ ! -f "$secrets/server.key" ]; then
  # make-dev-certs.sh writes next to itself: run a copy inside secrets/.
  cp "$root/certs/make-dev-certs.sh" "$secrets/"
  bash "$secrets/make-dev-certs.sh"
  rm -f "$secrets/make-dev-certs.sh"
fi

if [ ! -f "$secrets/token.key" ]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$secrets/token.key"
  openssl req -x509 -new -key "$secrets/token.key" -subj "/CN=portcullis token signer" \
    -days 825 -out "$secrets/token.crt" 2>/dev/null
  echo "secrets/: made token.key and token.crt"
fi

if [ ! -f "$secrets/ldap-bind.pw" ]; then
  printf 'servicepw\n' > "$secrets/ldap-bind.pw"     # uid=serviceaccount in deploy/ldap/
fi

if [ ! -f "$secrets/haproxy.pem" ] || [ "$secrets/server.pem" -nt "$secrets/haproxy.pem" ] \
  || [ "$secrets/server.key" -nt "$secrets/haproxy.pem" ]; then
  cat "$secrets/server.pem" "$secrets/server.key" > "$secrets/haproxy.pem"
fi

chmod 644 "$secrets"/*.pem "$secrets/token.crt"
# haproxy.pem holds the TLS key as well.
chmod 600 "$secrets"/*.key "$secrets/ldap-bind.pw" "$secrets/haproxy.pem"
if [ "$(id -u)" -eq 0 ]; then
  # Run as root: hand the files to the image's own user instead of running it as root.
  chown -R 10001:10001 "$secrets"
elif [ ! -f "$here/../.env" ]; then
  echo "PORTCULLIS_USER=$(id -u):$(id -g)" > "$here/../.env"
fi
echo "ready: docker compose -f deploy/compose.yaml up -d   (trust $secrets/ca.pem in clients)"
