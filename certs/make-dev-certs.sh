#!/usr/bin/env bash
# Makes a development CA and a server certificate for localhost / 127.0.0.1 in this folder.
# Never use these in production: the CA key sits next to them.
set -euo pipefail
cd "$(dirname "$0")"
[ -f server.pem ] && [ -f server.key ] && { echo "certs/: server.pem and server.key exist"; exit 0; }
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
  -subj "/CN=portcullis development CA" -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
  -extfile server.ext -out server.pem 2>/dev/null
rm -f server.csr server.ext ca.srl
echo "certs/: made ca.pem (trust this), server.pem, server.key"
