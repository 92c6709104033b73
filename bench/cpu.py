#!/usr/bin/env python3
"""CPU time portcullis spends per request: one keep-alive connection, manifest GETs with Basic
auth, N requests; the proxy's utime+stime (/proc/PID/stat) before and after, divided by N.

    cargo build --release && python3 bench/cpu.py                        # this checkout
    python3 bench/cpu.py --binary A=/tmp/old/portcullis --binary B=target/release/portcullis
    python3 bench/cpu.py --perf perf.data        # also `perf record -g` the first binary's loop
    python3 bench/cpu.py --strace counts.txt     # or count its system calls (strace -c)
    python3 bench/cpu.py --cache '{tag_ttl: 5s}' # with cache.manifests (hits by tag)
    python3 bench/cpu.py --nginx                 # nginx as a plain proxy too, in the same rounds

Each binary is measured `--rounds` times, interleaved, and the median is reported; the client
(this script) and the registry run on the same machine, so on a busy machine read the numbers
as a comparison between binaries measured in the same run, not as absolutes.
Python standard library only; needs docker-registry.
"""

import argparse
import atexit
import base64
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the shared start/stop helpers)

USER, PASSWORD = "cpu", "cpu-password-123"


def start_proxy(work, name, binary, registry, users_file, cache):
    port = bench.free_port()
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    bench.write(os.path.join(d, "acl.yaml"), f"""
- match: {{account: {USER}, name: "bench/**"}}
  actions: [pull]
  comment: the benchmark user
- match: {{}}
  actions: []
  comment: default deny
""")
    cfg = f"""
listen: 127.0.0.1:{port}
upstream: http://127.0.0.1:{registry}
auth:
  users: {users_file}
acl: acl.yaml
"""
    if cache:
        cfg += f"cache:\n  manifests: {cache}\n"
    bench.write(os.path.join(d, "proxy.yaml"), cfg)
    p = bench.start(name, [binary, "serve", "-c", os.path.join(d, "proxy.yaml")], work,
                    {"RUST_LOG": "info"})
    bench.wait_http(port, name, ok=(401,))
    return port, p


def loop(port, path, n):
    """n GETs on one keep-alive connection; the wall time."""
    auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    headers = {"Authorization": auth, "Accept": bench.MANIFEST_TYPE}
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    start = time.perf_counter()
    for _ in range(n):
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        r.read()
        if r.status != 200:
            sys.exit(f"GET {path}: {r.status}")
    c.close()
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", action="append", default=[],
                    help="NAME=PATH (repeatable); default: this checkout's release build")
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--by", choices=["tag", "digest"], default="tag")
    ap.add_argument("--cache", default="", help="cache.manifests YAML, e.g. '{tag_ttl: 5s}'")
    ap.add_argument("--nginx", action="store_true",
                    help="also measure nginx as a plain proxy (no auth), interleaved")
    ap.add_argument("--perf", metavar="FILE", help="perf record -g the first binary's last round")
    ap.add_argument("--strace", metavar="FILE",
                    help="strace -c (syscall counts) of the first binary's last round instead")
    args = ap.parse_args()
    binaries = [b.split("=", 1) for b in args.binary] or [
        ["portcullis", os.path.join(bench.ROOT, "target/release/portcullis")]]

    work = tempfile.mkdtemp(prefix="portcullis-cpu-")
    atexit.register(bench.stop_all)
    atexit.register(shutil.rmtree, work, True)
    registry, reg_p = bench.start_registry(work)
    bench.push_small_image(registry)
    _, _, manifest = bench.request(registry, "GET", f"/v2/{bench.SMALL_REPO}/manifests/v1",
                                   {"Accept": bench.MANIFEST_TYPE})
    import hashlib
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    ref = "v1" if args.by == "tag" else digest
    path = f"/v2/{bench.SMALL_REPO}/manifests/{ref}"
    hashed = subprocess.run([binaries[0][1], "hash-password", "--cost", "10"], input=PASSWORD,
                            capture_output=True, text=True, check=True).stdout.strip()
    users = bench.write(os.path.join(work, "users.yaml"), f'{USER}:\n  password: "{hashed}"\n')

    proxies = {name: start_proxy(work, f"proxy-{name}", path_, registry, users, args.cache)
               for name, path_ in binaries}
    nginx_pids = {}
    if args.nginx:
        plain, _, ngx = bench.start_nginx(work, registry, bench.htpasswd(work))
        proxies["nginx"] = (plain, ngx)
        nginx_pids["nginx"] = [ngx.pid] + bench.children(ngx.pid)
    for port, _ in proxies.values():
        loop(port, path, 200)  # warm: login cache, connection pool
    per_request = {name: [] for name in proxies}
    registry_cpu = {name: [] for name in proxies}
    for rnd in range(args.rounds):
        for name, (port, p) in proxies.items():
            perf = None
            if (args.perf or args.strace) and rnd == args.rounds - 1 and name == binaries[0][0]:
                argv = (["perf", "record", "--call-graph", os.environ.get("PERF_CALLGRAPH", "fp"), "-o", args.perf] if args.perf else
                        ["strace", "-f", "-c", "-o", args.strace])
                perf = subprocess.Popen(argv + ["-p", str(p.pid)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
            pids = nginx_pids.get(name, [p.pid])
            c0, r0 = bench.cpu_seconds(pids), bench.cpu_seconds([reg_p.pid])
            wall = loop(port, path, args.requests)
            c1, r1 = bench.cpu_seconds(pids), bench.cpu_seconds([reg_p.pid])
            if perf:
                perf.send_signal(2)
                perf.wait()
            us = (c1 - c0) / args.requests * 1e6
            per_request[name].append(us)
            registry_cpu[name].append((r1 - r0) / args.requests * 1e6)
            bench.log(f"round {rnd + 1} {name}: {us:.1f} µs CPU/request in the proxy, "
                      f"{args.requests / wall:.0f} req/s")
    print(f"| proxy | its CPU µs/request (median of {args.rounds}) | all rounds | "
          f"registry CPU µs/request |")
    print("|---|---:|---|---:|")
    for name in proxies:
        print(f"| {name} | {statistics.median(per_request[name]):.1f} | "
              f"{', '.join(f'{v:.1f}' for v in per_request[name])} | "
              f"{statistics.median(registry_cpu[name]):.0f} |")


if __name__ == "__main__":
    main()
