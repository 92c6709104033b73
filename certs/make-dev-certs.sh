#!/usr/bin/env bash
# Makes development certificates in this folder, for the example proxy.yaml:
#   ca.pem (trust this), server.pem + server.key (TLS for localhost / 127.0.0.1),
#   token.key + token.crt (EC P-256 key that signs registry tokens, and its certificate).
# Never use these in production: the CA key sits next to them. Existing files are kept.
set -euo pipefail
cd "$(dirname "$0")"
umask 077
if [ ! -f server.pem ] || [ ! -f server.key ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
    -subj "/CN=portcullis development CA" -keyout ca.key -out ca.pem 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n' > server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
    -extfile server.ext -out server.pem 2>/dev/null
  rm -f server.csr server.ext ca.srl
  chmod 644 ca.pem server.pem
  echo "certs/: made ca.pem (trust this), server.pem, server.key"
fi
if [ ! -f token.key ] || [ ! -f token.crt ]; then
  openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null \
    | openssl pkcs8 -topk8 -nocrypt -out token.key
  openssl req -x509 -key token.key -subj "/CN=portcullis token signer" -days 825 \
    -out token.crt 2>/dev/null
  chmod 644 token.crt
  echo "certs/: made token.key and token.crt (give token.crt to a registry:2 that checks tokens)"
fi
