#!/bin/sh
# portcullis benchmarks, one command from a clean clone (Debian/Ubuntu):
#
#   bench/run.sh                       # 5 rounds × 5 s, 512 MiB blob, ACL scale; ~25 min
#   bench/run.sh --rounds 1 --duration 2 --blob-mib 64 --no-doc   # a quick look
#   bench/run.sh --rounds 1 --duration 1 --blob-mib 8 --no-acl --no-doc --storm 50  # smoke
#
# Compares the registry, nginx, HAProxy (blobs) and portcullis without the manifest cache,
# with it by digest (tag_ttl 0) and by tag (tag_ttl 5s); a pull storm (--storm N clients)
# counted at the registry's access log; RSS while streaming. CPU per request of two builds
# side by side: python3 bench/cpu.py --binary old=PATH --binary new=PATH.
#
# Installs what is missing with apt-get (wrk, nginx, haproxy, docker-registry, curl,
# apache2-utils for htpasswd and ab, gnuplot), builds portcullis and the ACL scale benchmark
# in release mode, then runs bench/bench.py (all options: bench/run.sh --help). Writes the
# generated part of docs/benchmarks.md, docs/benchmarks.png and bench/results/*.json.
set -eu
cd "$(dirname "$0")/.."

missing=""
for pair in wrk:wrk nginx:nginx haproxy:haproxy docker-registry:docker-registry curl:curl \
    htpasswd:apache2-utils ab:apache2-utils gnuplot:gnuplot-nox python3:python3; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
done
if [ -n "$missing" ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    echo "installing:$missing" >&2
    $sudo apt-get update
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    $sudo apt-get install -y --no-install-recommends $missing
fi

cargo build --release --bin portcullis --example acl_scale
exec python3 bench/bench.py "$@"
