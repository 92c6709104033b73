#!/usr/bin/env python3
"""portcullis benchmarks: bare registry:2 vs nginx, HAProxy, nginx auth_basic and portcullis.

Run through bench/run.sh (which installs the tools and builds portcullis). Everything runs
on loopback in one go, interleaved round by round so drift hits every target equally, and
reports medians. Results: a table on stdout, bench/results/<date>.json, and the generated
part of docs/benchmarks.md (between the bench:begin/end markers) with a PNG plot.
Python standard library only.
"""

import argparse
import atexit
import base64
import datetime
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROCS = []
USER, PASSWORD = "bench", "bench-password-123"
SMALL_REPO, BLOB_REPO = "bench/small", "bench/blob"
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name, argv, work, env=None):
    # Logs in a folder of their own: portcullis watches the folders of its files (the
    # htpasswd file is in `work`), and a log written there wakes its watcher on every line.
    os.makedirs(os.path.join(work, "logs"), exist_ok=True)
    out = open(os.path.join(work, "logs", f"{name}.log"), "wb")
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         env={**os.environ, **(env or {})}, cwd=work)
    PROCS.append(p)
    return p


def stop_all():
    for p in reversed(PROCS):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in reversed(PROCS):
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def request(port, method, path, headers=None, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    # r.headers is case-insensitive: HAProxy sends header names in lower case.
    return r.status, r.headers, data


def wait_http(port, what, ok=(200, 401), timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if request(port, "GET", "/v2/")[0] in ok:
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"{what} did not come up on port {port}")


def version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except (OSError, IndexError):
        return "?"


def cpu_seconds(pids):
    """utime + stime of these processes (Linux /proc/PID/stat, in clock ticks)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / tick


def children(pid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except OSError:
                pass
    return out


def settle(pids, quiet_ticks=3, timeout=20.0):
    """Waits until the servers are idle (less than `quiet_ticks` CPU ticks in 0.3 s), so one
    run's backlog (nginx still hashing bcrypt for connections wrk gave up on) does not steal
    CPU from the next target."""
    tick = 1 / os.sysconf("SC_CLK_TCK")
    deadline = time.time() + timeout
    before = cpu_seconds(pids)
    while time.time() < deadline:
        time.sleep(0.3)
        now = cpu_seconds(pids)
        if now - before < quiet_ticks * tick:
            return
        before = now


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


# ---------------------------------------------------------------------------------------------
# Set-up


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def start_registry(work):
    port = free_port()
    cfg = write(os.path.join(work, "registry.yml"), f"""version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {work}/registry-data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
""")
    p = start("registry", ["docker-registry", "serve", cfg], work)
    wait_http(port, "registry", ok=(200,))
    return port, p


def push_small_image(port):
    """A small image (config + one 4 KiB layer), pushed directly to the registry."""
    def blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        status, headers, _ = request(port, "POST", f"/v2/{SMALL_REPO}/blobs/uploads/")
        assert status == 202, status
        loc = urllib.parse.urlsplit(headers["Location"])
        path = f"{loc.path}?{loc.query}&digest={digest}"
        status, _, body = request(port, "PUT", path, {"Content-Type": "application/octet-stream"}, data)
        assert status == 201, (status, body)
        return {"mediaType": "", "size": len(data), "digest": digest}

    config = blob(json.dumps({"architecture": "amd64", "os": "linux",
                              "rootfs": {"type": "layers", "diff_ids": []}}).encode())
    layer = blob(os.urandom(4096))
    config["mediaType"] = "application/vnd.docker.container.image.v1+json"
    layer["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                           "config": config, "layers": [layer]}).encode()
    status, _, body = request(port, "PUT", f"/v2/{SMALL_REPO}/manifests/v1",
                              {"Content-Type": MANIFEST_TYPE}, manifest)
    assert status == 201, (status, body)
    return len(manifest), "sha256:" + hashlib.sha256(manifest).hexdigest()


def htpasswd(work):
    path = os.path.join(work, "htpasswd")
    subprocess.run(["htpasswd", "-B", "-C", "10", "-b", "-c", path, USER, PASSWORD],
                   check=True, capture_output=True)
    return path


def start_nginx(work, registry, htpasswd_file):
    plain, auth = free_port(), free_port()
    tmp = os.path.join(work, "nginx-tmp")
    os.makedirs(tmp, exist_ok=True)
    user = "user root;" if os.geteuid() == 0 else ""
    location = """
      location /v2/ {
        proxy_pass http://registry;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_request_buffering off;
        proxy_read_timeout 900;
        %s
      }"""
    cfg = write(os.path.join(work, "nginx.conf"), f"""
{user}
worker_processes auto;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log {work}/nginx-access.log;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  upstream registry {{ server 127.0.0.1:{registry}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{plain};
    client_max_body_size 0;
    chunked_transfer_encoding on;
    {location % ""}
  }}
  server {{
    listen 127.0.0.1:{auth};
    client_max_body_size 0;
    chunked_transfer_encoding on;
    {location % f'auth_basic "Registry realm"; auth_basic_user_file {htpasswd_file};'}
  }}
}}
""")
    p = start("nginx", ["nginx", "-p", work, "-c", cfg], work)
    wait_http(plain, "nginx", ok=(200,))
    wait_http(auth, "nginx auth_basic", ok=(401,))
    time.sleep(0.3)
    return plain, auth, p


def start_haproxy(work, registry):
    port = free_port()
    cfg = write(os.path.join(work, "haproxy.cfg"), f"""
global
  maxconn 4096
defaults
  mode http
  option http-keep-alive
  option splice-auto
  timeout connect 5s
  timeout client 900s
  timeout server 900s
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  http-reuse always
  server registry 127.0.0.1:{registry}
""")
    p = start("haproxy", ["haproxy", "-db", "-f", cfg], work)
    wait_http(port, "haproxy", ok=(200,))
    return port, p


def start_portcullis(work, binary, registry, htpasswd_file, rust_log, name=None, cache=None):
    """portcullis with Basic and token auth; `cache`: the `cache.manifests` YAML, or None."""
    port = free_port()
    name = name or f"portcullis-{rust_log}"
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    certs = os.path.join(work, "token-certs")
    if not os.path.exists(os.path.join(certs, "token.key")):
        subprocess.run([binary, "gen-token-key", "--dir", certs], check=True, capture_output=True)
    write(os.path.join(d, "acl.yaml"), """
- match: {account: admin}
  actions: ["*"]
  comment: admins do everything
- match: {account: bench, name: "bench/**"}
  actions: [pull, push, delete]
  comment: the benchmark user
- match: {account: "/.+/", name: "${account}/*"}
  actions: ["*"]
  comment: everyone owns their namespace
- match: {}
  actions: []
  comment: default deny
""")
    cfg = write(os.path.join(d, "proxy.yaml"), f"""
listen: 127.0.0.1:{port}
upstream: http://127.0.0.1:{registry}
auth:
  challenge: basic
  htpasswd: {htpasswd_file}
  token:
    key: {certs}/token.key
    certificate: {certs}/token.crt
    expiration: 2h
acl: acl.yaml
""" + (f"cache:\n  manifests: {cache}\n" if cache else ""))
    p = start(name, [binary, "serve", "-c", cfg], work, {"RUST_LOG": rust_log})
    wait_http(port, "portcullis", ok=(401,))
    return port, p


def bearer_token(port):
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    q = urllib.parse.urlencode([("service", "Docker registry"),
                                ("scope", f"repository:{SMALL_REPO}:pull"),
                                ("scope", f"repository:{BLOB_REPO}:pull,push")])
    status, _, body = request(port, "GET", f"/auth?{q}", {"Authorization": f"Basic {auth}"})
    assert status == 200, (status, body)
    return json.loads(body)["token"]


# ---------------------------------------------------------------------------------------------
# Small requests (wrk)

WRK_LINE = re.compile(r"^\s*(50|99)%\s+([\d.]+)(us|ms|s)\s*$")


def to_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk_script(work, method, authorization):
    name = f"{method}-{hashlib.sha1((authorization or '').encode()).hexdigest()[:8]}.lua"
    path = os.path.join(work, name)
    lines = [f'wrk.method = "{method}"', f'wrk.headers["Accept"] = "{MANIFEST_TYPE}"']
    if authorization:
        lines.append(f'wrk.headers["Authorization"] = "{authorization}"')
    return write(path, "\n".join(lines) + "\n")


AB_LINE = re.compile(r"^\s*(50|99)%\s+(\d+)\s*$")


def run_ab(port, authorization, conns, duration, ref="v1"):
    """HEAD requests with ApacheBench: wrk's parser waits for a body after a HEAD answer
    that has a Content-Length, so it cannot measure HEAD. ab's percentiles are whole ms."""
    url = f"http://127.0.0.1:{port}/v2/{SMALL_REPO}/manifests/{ref}"
    argv = ["ab", "-k", "-i", "-q", "-c", str(conns), "-t", str(duration), "-n", "100000000",
            "-s", "10", "-H", f"Accept: {MANIFEST_TYPE}"]
    if authorization:
        argv += ["-H", f"Authorization: {authorization}"]
    out = subprocess.run(argv + [url], capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))
    lat = {m.group(1): float(m.group(2)) for m in map(AB_LINE.match, out.splitlines()) if m}
    bad = re.search(r"Non-2xx responses:\s+(\d+)", out)
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    return {"rps": rps, "p50": lat.get("50"), "p99": lat.get("99"),
            "non2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": f"failed {failed.group(1)}" if failed and failed.group(1) != "0" else ""}


def run_wrk(port, script, conns, duration, ref="v1"):
    url = f"http://127.0.0.1:{port}/v2/{SMALL_REPO}/manifests/{ref}"
    argv = ["wrk", f"-t{min(2, conns)}", f"-c{conns}", f"-d{duration}s", "--latency",
            "--timeout", "10s", "-s", script, url]
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {m.group(1): to_ms(m.group(2), m.group(3))
           for m in map(WRK_LINE.match, out.splitlines()) if m}
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {"rps": rps, "p50": lat.get("50"), "p99": lat.get("99"),
            "non2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(0) if errors else ""}


# ---------------------------------------------------------------------------------------------
# Blobs (curl)


def make_blob(work, mib):
    path = os.path.join(work, "blob.bin")
    h = hashlib.sha256()
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(mib):
            # Different bytes per MiB without paying for 512 MiB of urandom.
            block = hashlib.sha256(i.to_bytes(8, "little")).digest() * 32 + chunk[1024:]
            f.write(block)
            h.update(block)
    return path, "sha256:" + h.hexdigest()


def curl(args):
    out = subprocess.run(["curl", "-sS", "--fail-with-body", "-o", "/dev/null", "-w",
                          "%{http_code} %{time_total} %{size_download} %{size_upload}"] + args,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"curl {args}: {out.stderr.strip()} {out.stdout}")
    code, total, down, up = out.stdout.split()
    return int(code), float(total), int(float(down)), int(float(up))


def start_upload(port, auth):
    headers = {"Authorization": auth} if auth else {}
    status, h, body = request(port, "POST", f"/v2/{BLOB_REPO}/blobs/uploads/", headers)
    assert status == 202, (status, body)
    loc = urllib.parse.urlsplit(h["Location"])
    return f"http://127.0.0.1:{port}{loc.path}?{loc.query}"


def auth_args(auth):
    return ["-H", f"Authorization: {auth}"] if auth else []


def push_monolithic(port, auth, path, digest):
    url = start_upload(port, auth)
    code, t, _, up = curl(auth_args(auth) + ["-X", "PUT", "-T", path, "-H",
                          "Content-Type: application/octet-stream", f"{url}&digest={digest}"])
    assert code == 201, code
    return up, t


def push_chunked(port, auth, path, digest):
    url = start_upload(port, auth)
    out = subprocess.run(["curl", "-sS", "--fail-with-body", "-o", "/dev/null", "-D", "-", "-w",
                          "\n%{time_total} %{size_upload}", "-X", "PATCH", "-T", path,
                          "-H", "Transfer-Encoding: chunked",
                          "-H", "Content-Type: application/octet-stream"] + auth_args(auth) + [url],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"PATCH: {out.stderr} {out.stdout}")
    loc = re.search(r"^location:\s*(\S+)", out.stdout, re.I | re.M).group(1)
    t1, up = out.stdout.strip().splitlines()[-1].split()
    loc = urllib.parse.urlsplit(loc)
    code, t2, _, _ = curl(auth_args(auth) + ["-X", "PUT", "-H", "Content-Length: 0",
                          f"http://127.0.0.1:{port}{loc.path}?{loc.query}&digest={digest}"])
    assert code == 201, code
    return int(float(up)), float(t1) + t2


def pull(port, auth, digest):
    code, t, down, _ = curl(auth_args(auth) + [f"http://127.0.0.1:{port}/v2/{BLOB_REPO}/blobs/{digest}"])
    assert code == 200, code
    return down, t


# ---------------------------------------------------------------------------------------------
# Pull storm


def registry_manifest_requests(work):
    """Manifest requests in the registry's access log so far, by tag and by digest."""
    tag = digest = 0
    with open(os.path.join(work, "logs", "registry.log"), errors="replace") as f:
        for line in f:
            m = re.search(r'"(?:GET|HEAD) /v2/[^ "]*/manifests/([^ "?]+)', line)
            if m:
                if ":" in m.group(1):
                    digest += 1
                else:
                    tag += 1
    return tag, digest


def pull_storm(port, auth, digest, pulls):
    """`pulls` clients at once, each pulling one tag's manifests as containerd does: the
    manifest by tag, then by digest. Returns (seconds, failures)."""
    import threading
    headers = {"Accept": MANIFEST_TYPE, **({"Authorization": auth} if auth else {})}
    barrier = threading.Barrier(pulls)
    failures = []

    def one():
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            c.connect()
            barrier.wait(timeout=60)
            for ref in ("v1", digest):
                c.request("GET", f"/v2/{SMALL_REPO}/manifests/{ref}", headers=headers)
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    failures.append(r.status)
            c.close()
        except Exception as e:  # noqa: BLE001 - counted, reported
            failures.append(str(e))

    threads = [threading.Thread(target=one) for _ in range(pulls)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, len(failures)


# ---------------------------------------------------------------------------------------------
# Report


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_ratio(x, base):
    return f"{x / base:.2f}×" if x and base else "–"


def render(results, meta, acl, png_name):
    targets = results["targets"]
    small = results["small"]
    lines = []
    p = lines.append
    p(f"Run: {meta['date']} on {meta['machine']}; `{meta['command']}`; "
      f"{meta['rounds']} rounds × {meta['duration']} s per small-request case, "
      f"medians; blob {meta['blob_mib']} MiB. Load average {meta['loadavg']}.")
    p("")
    p("Versions: " + "; ".join(f"{k} `{v}`" for k, v in meta["versions"].items()) + ".")
    p("")
    p("### Small requests: manifest by tag and by digest, keep-alive (requests/s, ratio to the bare registry)")
    p("")
    p("GET with `wrk -t2 -cN --latency`; HEAD with `ab -k -i -cN` (wrk cannot parse HEAD answers "
      "that carry a Content-Length; ab reports whole milliseconds).")
    p("")
    cases = list(small.keys())
    p("| target | " + " | ".join(cases) + " |")
    p("|---|" + "---:|" * len(cases))
    for t in targets:
        cells = []
        for c in cases:
            base = med([r["rps"] for r in small[c]["registry"]])
            v = med([r["rps"] for r in small[c][t]])
            cells.append(f"{v:,.0f} ({fmt_ratio(v, base)})" if v else "–")
        p(f"| {t} | " + " | ".join(cells) + " |")
    if "nginx" in targets:
        p("")
        p("Ratio to nginx as a plain proxy in the same run (cache off is the like-for-like row):")
        p("")
        p("| target | " + " | ".join(cases) + " |")
        p("|---|" + "---:|" * len(cases))
        for t in targets:
            if not t.startswith("portcullis"):
                continue
            cells = [fmt_ratio(med([r["rps"] for r in small[c][t]]),
                               med([r["rps"] for r in small[c]["nginx"]])) for c in cases]
            p(f"| {t} | " + " | ".join(cells) + " |")
    cpu = results.get("cpu_per_request") or {}
    if cpu:
        p("")
        p("Proxy CPU per request over all small-request runs (utime+stime ÷ requests; nginx: "
          "master and workers): " + "; ".join(f"{t} {v:.0f} µs" for t, v in cpu.items()) + ".")
    p("")
    p("Spread: lowest–highest requests/s over the rounds (the machine is shared; read the "
      "ratios above with this in mind):")
    p("")
    p("| target | " + " | ".join(cases) + " |")
    p("|---|" + "---:|" * len(cases))
    for t in targets:
        cells = [f"{min(r['rps'] for r in small[c][t]):,.0f}–{max(r['rps'] for r in small[c][t]):,.0f}"
                 for c in cases]
        p(f"| {t} | " + " | ".join(cells) + " |")
    p("")
    p("Latency p50 / p99 (ms, medians over rounds):")
    p("")
    p("| target | " + " | ".join(cases) + " |")
    p("|---|" + "---:|" * len(cases))
    for t in targets:
        cells = []
        for c in cases:
            p50 = med([r["p50"] for r in small[c][t]])
            p99 = med([r["p99"] for r in small[c][t]])
            cells.append(f"{p50:.2f} / {p99:.2f}" if p50 is not None else "–")
        p(f"| {t} | " + " | ".join(cells) + " |")
    bad = {(c, t): sum(r["non2xx"] for r in small[c][t]) for c in cases for t in targets}
    bad = {k: v for k, v in bad.items() if v}
    p("")
    p("Non-2xx answers during the small-request runs: " +
      (", ".join(f"{t} {c}: {n}" for (c, t), n in bad.items()) if bad else "none") + ".")
    p("")
    p("### Blobs (MiB/s, ratio to the bare registry; proxy CPU seconds per GiB moved)")
    p("")
    blobs = results["blobs"]
    ops = list(blobs.keys())
    p("| target | " + " | ".join(ops) + " | proxy CPU s/GiB |")
    p("|---|" + "---:|" * (len(ops) + 1))
    for t in results["blob_targets"]:
        cells = []
        for o in ops:
            base = med([r["mibs"] for r in blobs[o]["registry"]])
            v = med([r["mibs"] for r in blobs[o][t]])
            cells.append(f"{v:,.0f} ({fmt_ratio(v, base)})")
        cpu = results["cpu_per_gib"].get(t)
        cells.append(f"{cpu:.2f}" if cpu is not None and t != "registry" else "–")
        p(f"| {t} | " + " | ".join(cells) + " |")
    p("")
    storm = results.get("storm") or {}
    if storm:
        p("")
        p("### Pull storm: one tag's manifests, all clients at once")
        p("")
        p("Each client opens a connection, waits for all the others, then GETs the manifest by "
          "tag and by digest. The cached portcullis instances start cold (a manifest PUT "
          "through them empties the repository first). Registry requests are counted in the "
          "registry's access log.")
        p("")
        p("| target | clients | seconds | registry manifest GETs by tag | by digest | failures |")
        p("|---|---:|---:|---:|---:|---:|")
        for t, v in storm.items():
            p(f"| {t} | {v['pulls']} | {v['secs']:.2f} | {v['registry_by_tag']} | "
              f"{v['registry_by_digest']} | {v['failures']} |")
    r = results["rss"]
    p(f"portcullis memory: VmHWM {r['hwm_small_mib']:.1f} MiB after the small-request phase; "
      f"peak while streaming (VmHWM reset before the blob phase) {r['hwm_stream_mib']:.1f} MiB; "
      f"VmRSS at the end {r['rss_end_mib']:.1f} MiB." +
      (f" With the manifest cache (max_memory {r['cache_mib']} MiB, warm): peak while "
       f"streaming the blob {r['hwm_cache_stream_mib']:.1f} MiB (target: < 64 MiB + the cache)."
       if "hwm_cache_stream_mib" in r else ""))
    if acl:
        p("")
        p("### ACL scale (`cargo run --release --example acl_scale`)")
        p("")
        p("| rules | YAML | rules checked for every request | decide p50 | decide p99 | "
          "linear scan p50 | linear scan p99 | reload (wall, median) | reload CPU | ACL heap | "
          "RSS growth at load | process peak RSS |")
        p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for a in acl:
            p(f"| {a['rules']:,} | {a['yaml_kib']:,} KiB | {a['always']} | "
              f"{a['decide_p50_ns'] / 1000:.2f} µs | {a['decide_p99_ns'] / 1000:.2f} µs | "
              f"{a['linear_p50_ns'] / 1000:.1f} µs | {a['linear_p99_ns'] / 1000:.1f} µs | "
              f"{a['load_median_ms']:.0f} ms | {a.get('load_cpu_ms', 0):.0f} ms | "
              f"{a.get('heap_acl_mib', 0):.1f} MiB | {a['rss_acl_mib']:.1f} MiB | "
              f"{a['hwm_mib']:.1f} MiB |")
    p("")
    p(f"![ratios to the bare registry]({png_name})")
    return "\n".join(lines) + "\n"


def plot(results, png):
    """Grouped bars of the ratios to the bare registry, with gnuplot."""
    if not shutil.which("gnuplot"):
        log("gnuplot not found: no plot")
        return
    small, blobs = results["small"], results["blobs"]
    targets = [t for t in results["targets"] if t != "registry"]
    rows = []
    for c in small:
        base = med([r["rps"] for r in small[c]["registry"]])
        rows.append((c, [med([r["rps"] for r in small[c][t]]) / base for t in targets]))
    for o in blobs:
        base = med([r["mibs"] for r in blobs[o]["registry"]])
        rows.append((o, [med([r["mibs"] for r in blobs[o][t]]) / base
                         if t in blobs[o] else float("nan") for t in targets]))
    data = png + ".dat"
    with open(data, "w") as f:
        f.write("case " + " ".join(f'"{t}"' for t in targets) + "\n")
        for case, vals in rows:
            f.write(f'"{case}" ' + " ".join("NaN" if v != v else f"{v:.4f}" for v in vals) + "\n")
    script = f"""
set terminal pngcairo size 1400,560 font "sans,10" noenhanced
set output "{png}"
set title "Throughput relative to the bare registry (same run, medians; 1.0 = registry alone)"
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside right top
set xtics rotate by -30
set grid ytics
set yrange [0:1.3]
set ylabel "ratio to registry"
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lw 1.5
plot for [i=2:{len(targets) + 1}] "{data}" using i:xtic(1) title columnheader(i)
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    os.unlink(data)


def update_doc(doc, generated):
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    text = open(doc).read() if os.path.exists(doc) else f"# Benchmarks\n\n{begin}\n{end}\n"
    if begin not in text:
        text += f"\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1] if end in rest else ""
    with open(doc, "w") as f:
        f.write(f"{head}{begin}\n{generated}{end}{tail}")


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--conns", default="1,16")
    ap.add_argument("--storm", type=int, default=200, help="clients in the pull storm")
    ap.add_argument("--cache-mib", type=int, default=64, help="cache.manifests.max_memory")
    ap.add_argument("--all-targets", action="store_true",
                    help="small requests also against HAProxy, nginx auth_basic, RUST_LOG=warn")
    ap.add_argument("--blob-mib", type=int, default=512)
    ap.add_argument("--blob-rounds", type=int, default=None, help="default: --rounds")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/portcullis"))
    ap.add_argument("--acl-scale", default=os.path.join(ROOT, "target/release/examples/acl_scale"))
    ap.add_argument("--no-acl", action="store_true", help="skip the ACL scale benchmark")
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    ap.add_argument("--only", default="", help="comma-separated targets (registry is always in)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--render", metavar="JSON", help="only re-render a saved bench/results file")
    ap.add_argument("--label", default=None, help="portcullis version to report (default: git describe)")
    args = ap.parse_args()
    conns = [int(c) for c in args.conns.split(",")]
    if args.render:
        results = json.load(open(args.render))
        generated = render(results, results["meta"], results["acl"], "benchmarks.png")
        print(generated)
        if not args.no_doc:
            plot(results, os.path.join(ROOT, "docs", "benchmarks.png"))
            update_doc(os.path.join(ROOT, "docs/benchmarks.md"), generated)
        return
    blob_rounds = args.blob_rounds or args.rounds

    work = tempfile.mkdtemp(prefix="portcullis-bench-")
    atexit.register(stop_all)
    if not args.keep:
        atexit.register(shutil.rmtree, work, True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    log(f"work folder {work}")

    registry, reg_p = start_registry(work)
    manifest_len, manifest_digest = push_small_image(registry)
    hp = htpasswd(work)
    ngx, ngx_auth, ngx_p = start_nginx(work, registry, hp)
    ha, ha_p = start_haproxy(work, registry)
    pc, pc_p = start_portcullis(work, args.binary, registry, hp, "info")
    pcw, pcw_p = start_portcullis(work, args.binary, registry, hp, "warn")
    # The manifest cache: by digest only (tag_ttl 0, the default), and by tag for 5 s.
    pc0, pc0_p = start_portcullis(work, args.binary, registry, hp, "info", "portcullis-cache-0",
                                  f"{{max_memory: {args.cache_mib}MiB, digest_ttl: 10m, tag_ttl: 0s}}")
    pc5, pc5_p = start_portcullis(work, args.binary, registry, hp, "info", "portcullis-cache-5s",
                                  f"{{max_memory: {args.cache_mib}MiB, digest_ttl: 10m, tag_ttl: 5s}}")
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    token = "Bearer " + bearer_token(pc)
    token_w = "Bearer " + bearer_token(pcw)
    time.sleep(0.5)
    ngx_pids = [ngx_p.pid] + children(ngx_p.pid)

    # name: (port, Authorization, pids for CPU accounting)
    targets = {
        "registry": (registry, None, [reg_p.pid]),
        "nginx": (ngx, None, ngx_pids),
        "haproxy (splice)": (ha, None, [ha_p.pid]),
        "nginx auth_basic (bcrypt 10)": (ngx_auth, basic, ngx_pids),
        "portcullis Basic": (pc, basic, [pc_p.pid]),
        "portcullis Bearer": (pc, token, [pc_p.pid]),
        "portcullis Basic, RUST_LOG=warn": (pcw, basic, [pcw_p.pid]),
        "portcullis Bearer, RUST_LOG=warn": (pcw, token_w, [pcw_p.pid]),
        "portcullis Basic, cache tag_ttl 0": (pc0, basic, [pc0_p.pid]),
        "portcullis Basic, cache tag_ttl 5s": (pc5, basic, [pc5_p.pid]),
    }
    # HAProxy is there for blobs (splice); nginx auth_basic and the RUST_LOG=warn instances
    # only with --all-targets (they answer the questions of the earlier runs).
    small_default = ["registry", "nginx", "portcullis Basic", "portcullis Bearer",
                     "portcullis Basic, cache tag_ttl 0", "portcullis Basic, cache tag_ttl 5s"]
    if args.only:
        keep = {"registry"} | set(re.split(r",(?! )", args.only))  # names hold ", "
        targets = {k: v for k, v in targets.items() if k in keep}
    # Sanity: every target answers the manifest with 200 and the same length, by tag and digest.
    for name, (port, auth, _) in targets.items():
        for ref in ("v1", manifest_digest):
            status, _, body = request(port, "GET", f"/v2/{SMALL_REPO}/manifests/{ref}",
                                      {"Accept": MANIFEST_TYPE, **({"Authorization": auth} if auth else {})})
            assert status == 200 and len(body) == manifest_len, (name, ref, status, body[:200])

    names = [t for t in targets if args.all_targets or args.only or t in small_default]
    all_pids = sorted({pid for _, _, pids in targets.values() for pid in pids} |
                      {pc_p.pid, pcw_p.pid, pc0_p.pid, pc5_p.pid, ha_p.pid, reg_p.pid, *ngx_pids})
    load_start = open("/proc/loadavg").read().split()[:3]
    refs = {"tag": "v1", "digest": manifest_digest}
    cases = [(m, by, c) for m, by in (("GET", "tag"), ("GET", "digest"), ("HEAD", "tag"))
             for c in conns]
    label = lambda m, by, c: f"{m} {by} c={c}"  # noqa: E731
    small = {label(*case): {t: [] for t in names} for case in cases}
    scripts = {(m, t): wrk_script(work, m, targets[t][1]) for m in ("GET", "HEAD") for t in names}
    cpu_small = {t: [0.0, 0] for t in names}
    total = args.rounds * len(cases) * len(names) * args.duration
    log(f"small requests: {args.rounds} rounds × {len(cases)} cases × {len(names)} targets "
        f"× {args.duration}s ≈ {total // 60} min")
    for rnd in range(args.rounds):
        for m, by, c in cases:
            # Rotate the order each round so no target always runs first or last.
            order = names[rnd % len(names):] + names[:rnd % len(names)]
            for t in order:
                port, auth, pids = targets[t]
                c0 = cpu_seconds(pids)
                if m == "GET":
                    r = run_wrk(port, scripts[(m, t)], c, args.duration, refs[by])
                else:
                    r = run_ab(port, auth, c, args.duration, refs[by])
                if t != "registry":
                    cpu_small[t][0] += cpu_seconds(pids) - c0
                    cpu_small[t][1] += r["rps"] * args.duration
                small[label(m, by, c)][t].append(r)
                settle(all_pids)
                log(f"  round {rnd + 1} {m} {by} c={c} {t}: {r['rps']:.0f} req/s "
                    f"p50 {r['p50']} p99 {r['p99']} non2xx {r['non2xx']}")
    cpu_per_request = {t: s / n * 1e6 for t, (s, n) in cpu_small.items() if n}

    # Pull storm: N clients at once pull one tag's manifests (by tag, then by digest);
    # the registry's access log says how many manifest requests reached it.
    storm = {}
    _, _, manifest_body = request(registry, "GET", f"/v2/{SMALL_REPO}/manifests/v1",
                                  {"Accept": MANIFEST_TYPE})
    storm_targets = [t for t in ["registry", "nginx", "portcullis Basic",
                                 "portcullis Basic, cache tag_ttl 0",
                                 "portcullis Basic, cache tag_ttl 5s"] if t in targets]
    for t in storm_targets:
        port, auth, pids = targets[t]
        if "cache" in t:
            # Start cold: a manifest PUT through portcullis (the same bytes again, so the
            # registry's content does not change) empties the repository's cached answers.
            status, _, body = request(port, "PUT", f"/v2/{SMALL_REPO}/manifests/v1",
                                      {"Content-Type": MANIFEST_TYPE, "Authorization": auth},
                                      manifest_body)
            assert status == 201, (t, status, body)
        before = registry_manifest_requests(work)
        secs, failures = pull_storm(port, auth, manifest_digest, args.storm)
        time.sleep(0.3)  # the registry writes its access log line after the answer
        after = registry_manifest_requests(work)
        storm[t] = {"pulls": args.storm, "secs": secs, "failures": failures,
                    "registry_by_tag": after[0] - before[0],
                    "registry_by_digest": after[1] - before[1]}
        settle(all_pids)
        log(f"  pull storm {t}: {secs:.2f} s, registry manifest requests "
            f"{storm[t]['registry_by_tag']} by tag, {storm[t]['registry_by_digest']} by digest, "
            f"{failures} failures")

    hwm_small = status_kib(pc_p.pid, "VmHWM:")

    # Blobs: reset portcullis's peak RSS so the streaming peak is its own.
    try:
        write(f"/proc/{pc_p.pid}/clear_refs", "5")
        write(f"/proc/{pc5_p.pid}/clear_refs", "5")
    except OSError:
        log("cannot reset VmHWM (clear_refs): the streaming peak includes the small phase")
    blob_targets = [t for t in ["registry", "nginx", "haproxy (splice)",
                                "nginx auth_basic (bcrypt 10)", "portcullis Basic"] if t in targets]
    path, digest = make_blob(work, args.blob_mib)
    ops = ["push (PUT)", "push (chunked PATCH)", "pull (GET)"]
    blobs = {o: {t: [] for t in blob_targets} for o in ops}
    cpu = {t: [0.0, 0] for t in blob_targets}
    # Warm the page cache and store the blob once.
    push_monolithic(registry, None, path, digest)
    for rnd in range(blob_rounds):
        order = blob_targets[rnd % len(blob_targets):] + blob_targets[:rnd % len(blob_targets)]
        for t in order:
            port, auth, pids = targets[t]
            for o in ops:
                c0 = cpu_seconds(pids)
                if o == "push (PUT)":
                    n, secs = push_monolithic(port, auth, path, digest)
                elif o == "push (chunked PATCH)":
                    n, secs = push_chunked(port, auth, path, digest)
                else:
                    n, secs = pull(port, auth, digest)
                cpu[t][0] += cpu_seconds(pids) - c0
                cpu[t][1] += n
                mibs = n / (1 << 20) / secs
                blobs[o][t].append({"mibs": mibs, "secs": secs})
                settle(all_pids)
                log(f"  round {rnd + 1} {o} {t}: {mibs:.0f} MiB/s")
    # The cached instance streams the blob too: its peak with a warm cache.
    pull(pc5, basic, digest)
    rss = {
        "hwm_cache_stream_mib": status_kib(pc5_p.pid, "VmHWM:") / 1024,
        "cache_mib": args.cache_mib,
        "hwm_small_mib": hwm_small / 1024,
        "hwm_stream_mib": status_kib(pc_p.pid, "VmHWM:") / 1024,
        "rss_end_mib": status_kib(pc_p.pid, "VmRSS:") / 1024,
    }
    cpu_per_gib = {t: s / (n / (1 << 30)) for t, (s, n) in cpu.items() if n}

    acl = []
    if not args.no_acl and os.path.exists(args.acl_scale):
        log("ACL scale ...")
        out = subprocess.run([args.acl_scale, "--json"], capture_output=True, text=True, check=True)
        acl = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]

    def lscpu_model():
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
        return platform.processor()

    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} × {lscpu_model()}, "
                   f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') >> 30} GiB, "
                   f"Linux {platform.release()}",
        "command": "bench/run.sh " + " ".join(sys.argv[1:]),
        "rounds": args.rounds, "duration": args.duration, "blob_mib": args.blob_mib,
        "loadavg": f"{' '.join(load_start)} at the start, "
                   f"{' '.join(open('/proc/loadavg').read().split()[:3])} at the end",
        "versions": {
            "portcullis": args.label or version(["git", "-C", ROOT, "describe", "--always", "--dirty"]),
            "registry": version(["docker-registry", "--version"]),
            "nginx": version(["nginx", "-v"]),
            "haproxy": version(["haproxy", "-v"]),
            "wrk": version(["wrk", "-v"]),
            "curl": version(["curl", "--version"]).split(" (")[0],
            "rustc": version(["rustc", "--version"]),
        },
    }
    results = {"meta": meta, "targets": names, "blob_targets": blob_targets, "small": small,
               "blobs": blobs, "cpu_per_gib": cpu_per_gib, "rss": rss, "acl": acl,
               "storm": storm, "cpu_per_request": cpu_per_request}
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    with open(os.path.join(ROOT, f"bench/results/{stamp}.json"), "w") as f:
        json.dump(results, f, indent=1)
    png_name = "benchmarks.png"
    generated = render(results, meta, acl, png_name)
    print(generated)
    if not args.no_doc:
        plot(results, os.path.join(ROOT, "docs", png_name))
        update_doc(os.path.join(ROOT, "docs/benchmarks.md"), generated)
        log("wrote docs/benchmarks.md and docs/" + png_name)


if __name__ == "__main__":
    main()
