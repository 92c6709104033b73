//! ACL scale benchmark: decision latency, reload (load = read + parse + compile + index)
//! time and memory for generated, realistic rule sets of 10, 1 000 and 100 000 rules.
//!
//! ```sh
//! cargo run --release --example acl_scale              # 10, 1000, 100000 rules, a table
//! cargo run --release --example acl_scale -- --json 10 100000   # JSON lines (bench/run.sh)
//! ```
//!
//! Each size runs in a child process of its own so that its peak RSS (`VmHWM`) is its own.
//! The rule set mimics a large docker_auth installation: admins and anonymous pulls first,
//! then per-user rules (exact account, own namespace and team pulls), team rules by label
//! with globs, CI accounts by regex, repository regexes, environment labels, IP-restricted
//! mirrors, and the usual catch-alls (`${account}/*`, `shared/**`, deny) at the end.

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use portcullis::acl::{AccessRequest, Acl, Labels};

const FILES: usize = 10;

/// The system allocator, counting live heap bytes: the ACL's own size, apart from what
/// the allocator keeps around after parsing (which RSS includes).
struct Counting;

static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), std::sync::atomic::Ordering::Relaxed);
        std::alloc::System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        std::alloc::System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, std::sync::atomic::Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        std::alloc::System.realloc(ptr, layout, new)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_mib() -> f64 {
    LIVE.load(std::sync::atomic::Ordering::Relaxed) as f64 / (1 << 20) as f64
}

/// A small deterministic generator (xorshift), so every run sees the same rules.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Shape of a rule set of `n` rules: how many users and teams it speaks of.
struct Shape {
    users: usize,
    teams: usize,
}

impl Shape {
    fn new(n: usize) -> Shape {
        Shape {
            users: (n * 55 / 100 / 2).max(1),
            teams: (n / 50).max(1),
        }
    }
}

/// The rules, as YAML text split into `FILES` files (in name order = rule order).
fn generate(n: usize) -> Vec<String> {
    let shape = Shape::new(n);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut rules: Vec<String> = vec![
        "- match: {account: admin}\n  actions: ['*']\n  comment: admins\n".into(),
        "- match: {account: '', name: 'public/**'}\n  actions: [pull]\n  comment: anonymous pulls\n"
            .into(),
        "- match: {account: auditor, type: registry, name: catalog}\n  actions: ['*']\n".into(),
        "- match: {account: ''}\n  actions: []\n  comment: nothing else for anonymous\n".into(),
    ];
    let tail = [
        "- match: {account: '/.+/', name: '${account}/*'}\n  actions: ['*']\n  comment: own namespace\n",
        "- match: {account: '/.+/', name: 'shared/**'}\n  actions: [pull]\n",
        "- match: {labels: {groups: '/team[0-9]+/'}, name: 'handbook/*'}\n  actions: [pull]\n",
        "- match: {}\n  actions: []\n  comment: default deny\n",
    ];
    let body = n.saturating_sub(rules.len() + tail.len());
    let mut user = 0;
    while rules.len() < 4 + body {
        let t = rng.below(shape.teams);
        let roll = rng.below(100);
        let rule = if roll < 55 {
            // Per-user: own namespace, then pulls from the user's team.
            let u = user % shape.users;
            user += 1;
            if user <= shape.users {
                format!("- match: {{account: u{u}, name: 'u{u}/**'}}\n  actions: ['*']\n")
            } else {
                format!("- match: {{account: u{u}, name: 'team{t}/*'}}\n  actions: [pull]\n")
            }
        } else if roll < 75 {
            format!(
                "- match: {{labels: {{groups: team{t}}}, name: 'team{t}/**'}}\n  actions: [pull, push]\n  comment: team {t}\n"
            )
        } else if roll < 85 {
            let k = rng.below(20);
            format!(
                "- match: {{account: '/ci-team{t}-[a-z]+/', name: 'team{t}/app{k}-*'}}\n  actions: [pull, push]\n"
            )
        } else if roll < 88 {
            format!(
                "- match: {{account: '/.+/', name: '/team{t}/(svc|lib)-[0-9]+/'}}\n  actions: [pull]\n"
            )
        } else if roll < 94 {
            format!(
                "- match: {{labels: {{env: 'prod-{t}'}}, name: 'prod/team{t}/**'}}\n  actions: [pull]\n"
            )
        } else {
            format!(
                "- match: {{ip: '10.{}.{}.0/24', name: 'mirror{t}/*'}}\n  actions: [pull]\n",
                rng.below(256),
                rng.below(256)
            )
        };
        rules.push(rule);
    }
    rules.extend(tail.iter().map(|s| s.to_string()));
    rules.truncate(n.max(1));
    let per_file = rules.len().div_ceil(FILES);
    rules.chunks(per_file).map(|chunk| chunk.concat()).collect()
}

/// Requests like the ones a registry of this shape sees: users in their namespace and
/// their team's, CI accounts pushing, label-holders, anonymous pulls, and refusals.
struct Req {
    account: String,
    labels: Labels,
    name: String,
    ip: Option<std::net::IpAddr>,
}

fn requests(n: usize, count: usize) -> Vec<Req> {
    let shape = Shape::new(n);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    (0..count)
        .map(|_| {
            let u = rng.below(shape.users);
            let t = rng.below(shape.teams);
            let mut labels = Labels::new();
            labels.insert("groups".into(), vec![format!("team{t}")]);
            let (account, name) = match rng.below(8) {
                0 => (format!("u{u}"), format!("u{u}/app/web")),
                1 => (format!("u{u}"), format!("team{t}/svc-{}", rng.below(100))),
                2 => (format!("ci-team{t}-build"), format!("team{t}/app3-x")),
                3 => ("".into(), "public/base".into()),
                4 => (format!("u{u}"), format!("prod/team{t}/db")),
                5 => (format!("u{u}"), "shared/tools/x".into()),
                6 => (
                    format!("u{u}"),
                    format!("u{}/private", rng.below(shape.users)),
                ),
                _ => (format!("u{u}"), format!("mirror{t}/alpine")),
            };
            Req {
                account,
                labels,
                name,
                ip: Some(std::net::IpAddr::from([10, 1, 2, 3])),
            }
        })
        .collect()
}

fn access<'a>(r: &'a Req) -> AccessRequest<'a> {
    AccessRequest {
        account: &r.account,
        labels: &r.labels,
        ip: r.ip,
        service: "Docker registry",
        kind: "repository",
        name: &r.name,
        actions: &["pull", "push"],
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// CPU time (user + system) of this process so far, from /proc/self/stat.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // USER_HZ is 100 on Linux.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Times `decide` once per request, `rounds` times over, and gives the sorted samples.
fn time_decisions(
    reqs: &[Req],
    rounds: usize,
    f: impl Fn(&AccessRequest<'_>) -> usize,
) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(reqs.len() * rounds);
    for _ in 0..rounds {
        for r in reqs {
            let req = access(r);
            let start = Instant::now();
            black_box(f(black_box(&req)));
            samples.push(start.elapsed());
        }
    }
    samples.sort();
    samples
}

/// One size, in this process: prints one JSON line.
fn one(n: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = generate(n);
    let mut yaml_bytes = 0;
    for (i, text) in files.iter().enumerate() {
        yaml_bytes += text.len();
        std::fs::write(dir.path().join(format!("{i:03}.yaml")), text).expect("write");
    }
    drop(files);
    let rss_before = status_kib("VmRSS:");
    let heap_before = live_mib();
    let load = |path: &Path| -> Acl {
        match Acl::load(path) {
            Ok(loaded) => loaded.acl,
            Err(e) => panic!("generated ACL does not load: {e}"),
        }
    };
    // Reload cost: median of several full loads (the first one is kept as the live ACL).
    let mut load_times = Vec::new();
    let start = Instant::now();
    let acl = load(dir.path());
    load_times.push(start.elapsed());
    let rss_loaded = status_kib("VmRSS:");
    let heap_acl = live_mib() - heap_before;
    let load_rounds = if n >= 50_000 { 4 } else { 20 };
    let cpu_start = cpu_time();
    for _ in 0..load_rounds {
        let start = Instant::now();
        let again = load(dir.path());
        load_times.push(start.elapsed());
        drop(black_box(again));
    }
    let load_cpu = (cpu_time() - cpu_start) / load_rounds as u32;
    load_times.sort();
    assert_eq!(acl.len(), n.max(1));
    let (keyed, always) = acl.index_stats();

    let reqs = requests(n, 20_000);
    // Check the index against the scan on every request before timing anything.
    let mut allowed = 0;
    for r in reqs.iter().take(if n >= 50_000 { 500 } else { 20_000 }) {
        let req = access(r);
        let a = acl.first_match(&req).map(|r| r.origin.line);
        let b = acl.first_match_linear(&req).map(|r| r.origin.line);
        assert_eq!(a, b, "index and scan disagree for {} {}", r.account, r.name);
        allowed += usize::from(!acl.decide(&req).actions.is_empty());
    }
    let warm = time_decisions(&reqs, 1, |q| acl.decide(q).actions.len());
    drop(warm);
    let indexed = time_decisions(&reqs, 5, |q| acl.decide(q).actions.len());
    let linear_reqs = &reqs[..if n >= 50_000 { 300 } else { 5_000 }];
    let linear = time_decisions(linear_reqs, 1, |q| {
        acl.first_match_linear(q).map_or(0, |r| r.origin.line)
    });
    let ns = |d: Duration| d.as_nanos() as u64;
    println!(
        "{{\"rules\":{n},\"yaml_kib\":{},\"keyed\":{keyed},\"always\":{always},\"allowed_share\":{:.2},\
         \"decide_p50_ns\":{},\"decide_p99_ns\":{},\"decide_max_ns\":{},\
         \"linear_p50_ns\":{},\"linear_p99_ns\":{},\
         \"load_median_ms\":{:.1},\"load_max_ms\":{:.1},\"load_cpu_ms\":{:.0},\
         \"heap_acl_mib\":{:.1},\"rss_acl_mib\":{:.1},\"hwm_mib\":{:.1}}}",
        yaml_bytes / 1024,
        allowed as f64 / reqs.len().min(if n >= 50_000 { 500 } else { 20_000 }) as f64,
        ns(percentile(&indexed, 0.5)),
        ns(percentile(&indexed, 0.99)),
        ns(percentile(&indexed, 1.0)),
        ns(percentile(&linear, 0.5)),
        ns(percentile(&linear, 0.99)),
        percentile(&load_times, 0.5).as_secs_f64() * 1e3,
        percentile(&load_times, 1.0).as_secs_f64() * 1e3,
        load_cpu.as_secs_f64() * 1e3,
        heap_acl,
        rss_loaded.saturating_sub(rss_before) as f64 / 1024.0,
        status_kib("VmHWM:") as f64 / 1024.0,
    );
    drop(black_box(acl));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, n] = args.as_slice() {
        if flag == "--one" {
            one(n.parse().expect("a rule count"));
            return;
        }
    }
    let json = args.iter().any(|a| a == "--json");
    let mut sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = vec![10, 1_000, 100_000];
    }
    let exe = std::env::current_exe().expect("own path");
    if !json {
        println!(
            "{:>8} {:>9} {:>7} {:>11} {:>11} {:>12} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "rules",
            "yaml KiB",
            "always",
            "decide p50",
            "decide p99",
            "scan p50",
            "scan p99",
            "reload",
            "reload CPU",
            "ACL heap",
            "RSS after",
            "peak RSS"
        );
    }
    for n in sizes {
        let out = Command::new(&exe)
            .args(["--one", &n.to_string()])
            .output()
            .expect("run a size");
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            std::process::exit(1);
        }
        let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if json {
            println!("{line}");
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        let us = |k: &str| v[k].as_f64().unwrap_or(0.0) / 1000.0;
        println!(
            "{:>8} {:>9} {:>7} {:>9.2}µs {:>9.2}µs {:>10.1}µs {:>10.1}µs {:>8.0}ms {:>8.0}ms {:>7.1}MiB {:>7.1}MiB {:>7.1}MiB",
            v["rules"].to_string(),
            v["yaml_kib"].to_string(),
            v["always"].to_string(),
            us("decide_p50_ns"),
            us("decide_p99_ns"),
            us("linear_p50_ns"),
            us("linear_p99_ns"),
            v["load_median_ms"].as_f64().unwrap_or(0.0),
            v["load_cpu_ms"].as_f64().unwrap_or(0.0),
            v["heap_acl_mib"].as_f64().unwrap_or(0.0),
            v["rss_acl_mib"].as_f64().unwrap_or(0.0),
            v["hwm_mib"].as_f64().unwrap_or(0.0),
        );
    }
}
