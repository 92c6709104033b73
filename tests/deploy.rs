//! The deployment material in `deploy/` and the reference in `docs/`, checked offline: no
//! network, no container engine, no cluster.
//!
//! - `deploy/compose.yaml` passes `docker-compose config` (with and without the `ldap` profile)
//!   and keeps the registry unpublished;
//! - every manifest in `deploy/kubernetes/` passes `kubernetes-validate --strict`, and the
//!   Deployments keep the properties the docs promise (replicas, probes, no `subPath`, grace
//!   period longer than `shutdown_timeout`, restricted security context, S3 storage);
//! - `deploy/haproxy.cfg` (the `cluster` profile's load balancer) passes `haproxy -c`;
//! - `deploy/systemd/portcullis.service` passes `systemd-analyze verify`;
//! - the Kubernetes ConfigMaps + Secrets (laid out as the kubelet does, `..data` symlinks and
//!   all) and the compose configuration (secrets made by `deploy/compose/setup.sh`) load with
//!   `portcullis check`;
//! - every key the configuration parser accepts is in `docs/configuration.md`, and every key
//!   documented there is accepted. The keys are asked from the parser itself (an unknown key at
//!   each level makes serde list the known ones), never written down here.
//!
//! A missing external tool (`docker-compose`, `kubernetes-validate`, `haproxy`, `systemd-analyze`) skips
//! its test with a message, unless `PORTCULLIS_REQUIRE_DEPLOY_TOOLS` is set (then it fails).
//! `scripts/test.sh` is expected to install them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_yaml_ng::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn text(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn write(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) {
    let path = path.as_ref();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `program args`, or `None` when the program is not installed (the caller skips).
fn run_tool(program: &str, args: &[&str], dir: &Path) -> Option<Output> {
    match Command::new(program).args(args).current_dir(dir).output() {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let message = format!(
                "SKIPPED: `{program}` is not installed (scripts/test.sh installs it; \
                 PORTCULLIS_REQUIRE_DEPLOY_TOOLS=1 makes this a failure)"
            );
            if std::env::var_os("PORTCULLIS_REQUIRE_DEPLOY_TOOLS").is_some() {
                panic!("{message}");
            }
            eprintln!("{message}");
            None
        }
        Err(e) => panic!("{program}: {e}"),
    }
}

fn portcullis_check(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c"])
        .arg(config)
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .unwrap()
}

/// Whether this build's configuration parser knows `cluster:` (shared state through Redis).
/// The shipped fleet configurations (compose's proxy-cluster.yaml, the Kubernetes ConfigMap)
/// carry a `cluster:` section; until the parser accepts it they are checked without it.
/// Set to `true` once cluster mode is merged: then they are checked whole.
const CLUSTER_MERGED: bool = true;

/// `yaml` as `portcullis check` of this build should see it: without its top-level `cluster:`
/// block unless [`CLUSTER_MERGED`]. Panics when there is no such block: the fleet
/// configurations must keep it.
fn cluster_gated(yaml: &str, what: &str) -> String {
    assert!(
        yaml.lines().any(|l| l.starts_with("cluster:")),
        "{what} has no `cluster:` section"
    );
    if CLUSTER_MERGED {
        return yaml.to_string();
    }
    let mut out = String::new();
    let mut inside = false;
    for line in yaml.lines() {
        if line.starts_with("cluster:") {
            inside = true;
            continue;
        }
        if inside && (line.starts_with(' ') || line.is_empty() || line.starts_with('#')) {
            continue;
        }
        inside = false;
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Every YAML document of a file.
fn yaml_documents(path: &Path) -> Vec<Value> {
    use serde::Deserialize;
    let source = text(path);
    serde_yaml_ng::Deserializer::from_str(&source)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn kubernetes_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
}

/// Every Kubernetes object in deploy/kubernetes, by `Kind/name`.
fn kubernetes_objects() -> BTreeMap<String, Value> {
    let mut objects = BTreeMap::new();
    for file in kubernetes_files() {
        for doc in yaml_documents(&file) {
            let key = format!(
                "{}/{}",
                doc["kind"].as_str().unwrap(),
                doc["metadata"]["name"].as_str().unwrap()
            );
            assert!(objects.insert(key.clone(), doc).is_none(), "{key} twice");
        }
    }
    objects
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v:?}"))
}

// ---------------------------------------------------------------------------------------------
// docker compose

#[test]
fn compose_file_is_valid_and_keeps_the_registry_private() {
    let deploy = root().join("deploy");
    for profile in [
        &[][..],
        &["--profile", "ldap"][..],
        &["--profile", "cluster"][..],
    ] {
        let mut args = vec!["-f", "compose.yaml"];
        args.extend_from_slice(profile);
        args.push("config");
        let Some(out) = run_tool("docker-compose", &args, &deploy) else {
            return;
        };
        assert!(
            out.status.success(),
            "docker-compose {args:?}: {}",
            show(&out)
        );
        let config: Value = serde_yaml_ng::from_slice(&out.stdout).unwrap();
        let services = &config["services"];
        for name in ["registry", "portcullis", "ldap"] {
            assert!(!services[name].is_null(), "service {name} missing");
        }
        // The registry is reachable only through portcullis.
        assert!(
            services["registry"]["ports"].is_null(),
            "registry publishes a port"
        );
        for net in services["registry"]["networks"]
            .as_mapping()
            .unwrap()
            .keys()
        {
            let net = str_of(net, "network");
            assert_eq!(
                config["networks"][net]["internal"],
                Value::Bool(true),
                "{net}"
            );
        }
        // The admin port is published on the loopback only.
        let ports = format!("{:?}", services["portcullis"]["ports"]);
        assert!(
            ports.contains("127.0.0.1") && ports.contains("9100"),
            "{ports}"
        );
        assert_eq!(str_of(&services["ldap"]["profiles"][0], "profile"), "ldap");
        if profile.contains(&"cluster") {
            compose_cluster_profile(&config);
        }
    }
}

/// The `cluster` profile: Redis and the replicas unpublished, only HAProxy faces clients, and
/// every replica reads the fleet configuration.
fn compose_cluster_profile(config: &Value) {
    let services = &config["services"];
    for name in ["redis", "portcullis-1", "portcullis-2", "haproxy"] {
        assert!(!services[name].is_null(), "service {name} missing");
        assert_eq!(
            str_of(&services[name]["profiles"][0], "profile"),
            "cluster",
            "{name}"
        );
    }
    for name in ["redis", "portcullis-1", "portcullis-2"] {
        assert!(services[name]["ports"].is_null(), "{name} publishes a port");
    }
    for net in services["redis"]["networks"].as_mapping().unwrap().keys() {
        let net = str_of(net, "network");
        assert_eq!(
            config["networks"][net]["internal"],
            Value::Bool(true),
            "redis on {net}"
        );
    }
    for name in ["portcullis-1", "portcullis-2"] {
        let command = format!("{:?}", services[name]["command"]);
        assert!(command.contains("proxy-cluster.yaml"), "{name}: {command}");
        assert_eq!(services[name]["stop_signal"], Value::from("SIGTERM"));
    }
    let ports = format!("{:?}", services["haproxy"]["ports"]);
    assert!(ports.contains("5443"), "{ports}");
    // The replicas believe X-Forwarded-For from HAProxy's network, and only from it.
    let proxy: Value =
        serde_yaml_ng::from_str(&text(root().join("deploy/compose/proxy-cluster.yaml"))).unwrap();
    let trusted = format!("{:?}", proxy["trusted_proxies"]);
    let subnet = str_of(
        &config["networks"]["lb"]["ipam"]["config"][0]["subnet"],
        "lb subnet",
    );
    assert!(trusted.contains(subnet), "{trusted} vs {subnet}");
    assert!(str_of(&proxy["cluster"]["redis"], "cluster.redis").contains("//redis:"));
}

#[test]
fn haproxy_config_is_valid() {
    // The certificate paths point into compose's secrets folder: give it test files there.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = tls_pair();
    write(dir.path().join("haproxy.pem"), format!("{cert}{key}"));
    write(dir.path().join("ca.pem"), &cert);
    let cfg = text(root().join("deploy/haproxy.cfg"));
    for setting in [
        "option redispatch 1",
        "retry-on conn-failure empty-response 503",
        "option httpchk GET /readyz",
        "balance roundrobin",
        "option forwardfor",
    ] {
        assert!(
            cfg.lines().any(|l| l.trim() == setting),
            "{setting} missing"
        );
    }
    let cfg = cfg.replace(
        "/etc/haproxy/secrets/",
        &format!("{}/", dir.path().display()),
    );
    write(dir.path().join("haproxy.cfg"), cfg);
    let Some(out) = run_tool("haproxy", &["-c", "-f", "haproxy.cfg"], dir.path()) else {
        return;
    };
    assert!(out.status.success(), "haproxy -c: {}", show(&out));
    // Offline the replicas' names do not resolve: that warning is expected, no other.
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines().filter(|l| l.contains("[WARNING]")) {
        assert!(line.contains("could not resolve address"), "{stderr}");
    }
}

#[test]
fn compose_configuration_loads_with_portcullis_check() {
    // deploy/compose/setup.sh in a copy of the layout it expects (deploy/compose + certs/).
    let dir = tempfile::tempdir().unwrap();
    let compose = dir.path().join("deploy/compose");
    for rel in ["proxy.yaml", "proxy-cluster.yaml", "users.yaml", "setup.sh"] {
        write(
            compose.join(rel),
            text(root().join("deploy/compose").join(rel)),
        );
    }
    for entry in std::fs::read_dir(root().join("deploy/compose/acl")).unwrap() {
        let entry = entry.unwrap();
        write(
            compose.join("acl").join(entry.file_name()),
            text(entry.path()),
        );
    }
    write(
        dir.path().join("certs/make-dev-certs.sh"),
        text(root().join("certs/make-dev-certs.sh")),
    );
    let Some(out) = run_tool("bash", &["deploy/compose/setup.sh"], dir.path()) else {
        return;
    };
    assert!(out.status.success(), "setup.sh: {}", show(&out));
    for secret in [
        "server.pem",
        "server.key",
        "ca.pem",
        "token.key",
        "token.crt",
        "ldap-bind.pw",
        "haproxy.pem",
    ] {
        assert!(compose.join("secrets").join(secret).is_file(), "{secret}");
    }
    // HAProxy's file is the certificate and its key, private like the key.
    use std::os::unix::fs::PermissionsExt;
    let haproxy_pem = compose.join("secrets/haproxy.pem");
    assert_eq!(
        text(&haproxy_pem),
        text(compose.join("secrets/server.pem")) + &text(compose.join("secrets/server.key"))
    );
    assert_eq!(
        std::fs::metadata(&haproxy_pem)
            .unwrap()
            .permissions()
            .mode()
            & 0o077,
        0
    );
    // Run twice: it keeps what exists.
    let key = text(compose.join("secrets/token.key"));
    let again = run_tool("bash", &["deploy/compose/setup.sh"], dir.path()).unwrap();
    assert!(again.status.success(), "{}", show(&again));
    assert_eq!(key, text(compose.join("secrets/token.key")));

    let out = portcullis_check(&compose.join("proxy.yaml"));
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ok: 2 static users"), "{stdout}");
    assert!(stdout.contains("upstream registry:5000"), "{stdout}");

    // The replicas of the `cluster` profile.
    let cluster = compose.join("proxy-cluster.yaml");
    write(
        &cluster,
        cluster_gated(&text(&cluster), "deploy/compose/proxy-cluster.yaml"),
    );
    let out = portcullis_check(&cluster);
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ok: 2 static users"), "{stdout}");
}

// ---------------------------------------------------------------------------------------------
// Kubernetes

#[test]
fn kubernetes_manifests_validate() {
    let files = kubernetes_files();
    let mut args = vec!["-k".to_string(), "1.30".into(), "--strict".into()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let Some(out) = run_tool("kubernetes-validate", &args, root()) else {
        return;
    };
    assert!(out.status.success(), "kubernetes-validate: {}", show(&out));
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!report.contains("ERROR"), "{report}");
    // Every object was validated (none skipped as unknown).
    let objects = kubernetes_objects();
    assert_eq!(
        report.matches(" passed for resource ").count(),
        objects.len(),
        "{report}"
    );
}

/// The ConfigMap's proxy.yaml, as the portcullis pods see it.
fn kubernetes_proxy_yaml(objects: &BTreeMap<String, Value>) -> String {
    str_of(
        &objects["ConfigMap/portcullis-config"]["data"]["proxy.yaml"],
        "proxy.yaml",
    )
    .to_string()
}

#[test]
fn kubernetes_deployments_keep_their_promises() {
    let objects = kubernetes_objects();
    for kind in [
        "Namespace/registry",
        "Service/portcullis",
        "Service/registry",
        "PodDisruptionBudget/portcullis",
        "HorizontalPodAutoscaler/portcullis",
        "NetworkPolicy/registry",
        "Secret/registry-storage",
        "Secret/portcullis-redis",
        "StatefulSet/redis",
        "Service/redis",
        "NetworkPolicy/redis",
    ] {
        assert!(objects.contains_key(kind), "{kind} missing");
    }
    assert_eq!(
        objects["HorizontalPodAutoscaler/portcullis"]["apiVersion"],
        Value::from("autoscaling/v2")
    );

    let proxy: Value = serde_yaml_ng::from_str(&kubernetes_proxy_yaml(&objects)).unwrap();
    let shutdown =
        portcullis::config::parse_duration(str_of(&proxy["shutdown_timeout"], "shutdown_timeout"))
            .unwrap();

    let deploy = &objects["Deployment/portcullis"];
    assert!(deploy["spec"]["replicas"].as_u64().unwrap() >= 2);
    let pod = &deploy["spec"]["template"]["spec"];
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace > shutdown.as_secs(),
        "terminationGracePeriodSeconds {grace} <= shutdown_timeout {shutdown:?}"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], Value::Bool(true));
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], Value::Bool(true));
    assert_eq!(security["allowPrivilegeEscalation"], Value::Bool(false));
    assert_eq!(security["capabilities"]["drop"][0], Value::from("ALL"));
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"],
        Value::from("/readyz")
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"],
        Value::from("/healthz")
    );
    // The probes use the admin port, which is what admin_listen says.
    let admin_port: u64 = str_of(&proxy["admin_listen"], "admin_listen")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let admin = container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "admin")
        .expect("an `admin` port");
    assert_eq!(admin["containerPort"].as_u64(), Some(admin_port));
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(container[probe]["httpGet"]["port"], Value::from("admin"));
    }
    assert!(!container["resources"]["requests"].is_null());
    assert!(!container["resources"]["limits"].is_null());
    // Hot reload needs whole-folder mounts: subPath mounts never see updates.
    for mount in container["volumeMounts"].as_sequence().unwrap() {
        assert!(mount["subPath"].is_null(), "subPath in {mount:?}");
    }
    // Every file proxy.yaml names lies under a mounted folder.
    let mounts: Vec<&str> = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| str_of(&m["mountPath"], "mountPath"))
        .collect();
    let proxy_text = kubernetes_proxy_yaml(&objects);
    for path in proxy_text
        .split_whitespace()
        .filter(|w| w.starts_with("/etc/portcullis/"))
    {
        assert!(
            mounts
                .iter()
                .any(|m| path.starts_with(&format!("{m}/")) || path == *m),
            "{path} is not under a mount ({mounts:?})"
        );
    }

    let registry = &objects["Deployment/registry"];
    assert!(registry["spec"]["replicas"].as_u64().unwrap() >= 2);
    let env = registry["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .unwrap();
    let var = |name: &str| env.iter().find(|e| e["name"] == name);
    assert_eq!(var("REGISTRY_STORAGE").unwrap()["value"], Value::from("s3"));
    assert!(var("REGISTRY_STORAGE_S3_REGIONENDPOINT").is_some());
    for secret in [
        "REGISTRY_STORAGE_S3_ACCESSKEY",
        "REGISTRY_STORAGE_S3_SECRETKEY",
        "REGISTRY_HTTP_SECRET",
    ] {
        assert!(
            !var(secret).unwrap()["valueFrom"]["secretKeyRef"].is_null(),
            "{secret} must come from a Secret"
        );
    }
    // Redis: reached through its Service by the name in `cluster.redis`, only by portcullis
    // pods, with the password portcullis presents, and never forgetting a revocation.
    let redis = &objects["StatefulSet/redis"];
    let cluster_url = str_of(&proxy["cluster"]["redis"], "cluster.redis");
    assert!(
        cluster_url.starts_with("redis://redis:") || cluster_url.starts_with("rediss://redis:"),
        "{cluster_url}"
    );
    assert_eq!(
        objects["Service/redis"]["spec"]["selector"],
        redis["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(redis["spec"]["serviceName"], Value::from("redis"));
    let redis_container = &redis["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = redis_container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| str_of(a, "arg"))
        .collect();
    for pair in [
        ["--requirepass", "$(REDIS_PASSWORD)"],
        ["--appendonly", "yes"],
        ["--maxmemory-policy", "noeviction"],
    ] {
        assert!(
            args.windows(2).any(|w| w == pair),
            "{pair:?} not in {args:?}"
        );
    }
    assert_eq!(
        redis_container["env"][0]["valueFrom"]["secretKeyRef"]["name"],
        Value::from("portcullis-redis")
    );
    assert_eq!(
        redis_container["securityContext"]["readOnlyRootFilesystem"],
        Value::Bool(true)
    );
    let redis_secret = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["secret"]["secretName"] == "portcullis-redis")
        .expect("portcullis mounts the Redis password");
    assert!(
        str_of(&proxy["cluster"]["password_file"], "password_file").ends_with(&format!(
            "/{}",
            str_of(&redis_secret["secret"]["items"][0]["path"], "path")
        ))
    );
    let redis_policy = &objects["NetworkPolicy/redis"]["spec"];
    assert_eq!(
        redis_policy["podSelector"]["matchLabels"],
        redis["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(
        redis_policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"],
        deploy["spec"]["selector"]["matchLabels"]
    );

    let policy = &objects["NetworkPolicy/registry"]["spec"];
    assert_eq!(
        policy["podSelector"]["matchLabels"],
        registry["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(
        policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"],
        deploy["spec"]["selector"]["matchLabels"]
    );
}

/// Writes `files` into `dir` the way the kubelet mounts a ConfigMap or Secret: the files in a
/// timestamped folder, `..data` pointing at it, and each name a symlink through `..data`.
fn kubelet_volume(dir: &Path, files: &[(String, Vec<u8>)]) {
    let stamp = "..2026_01_01_00_00_00.000000001";
    for (name, contents) in files {
        write(dir.join(stamp).join(name), contents);
    }
    std::os::unix::fs::symlink(stamp, dir.join("..data")).unwrap();
    for (name, _) in files {
        std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
    }
}

fn string_data(object: &Value) -> Vec<(String, Vec<u8>)> {
    object["stringData"]
        .as_mapping()
        .or_else(|| object["data"].as_mapping())
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                str_of(k, "key").to_string(),
                str_of(v, "value").as_bytes().to_vec(),
            )
        })
        .collect()
}

/// A bcrypt hash (cost 4, so the test stays fast) for the placeholders of the users Secret.
fn test_hash() -> String {
    bcrypt::hash("test-password", 4).unwrap()
}

/// A TLS certificate and key for `localhost` (PEM).
fn tls_pair() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

#[test]
fn kubernetes_configuration_loads_with_portcullis_check() {
    let objects = kubernetes_objects();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("etc/portcullis");
    let proxy = cluster_gated(
        &kubernetes_proxy_yaml(&objects),
        "ConfigMap/portcullis-config",
    )
    .replace("/etc/portcullis/", &format!("{}/", base.display()));
    kubelet_volume(
        &base.join("config"),
        &[("proxy.yaml".into(), proxy.into_bytes())],
    );
    kubelet_volume(
        &base.join("acl"),
        &string_data(&objects["ConfigMap/portcullis-acl"]),
    );

    // The Secrets hold placeholders: fill them with real test values of the same shape.
    let hash = test_hash();
    let users: Vec<(String, Vec<u8>)> = string_data(&objects["Secret/portcullis-users"])
        .into_iter()
        .map(|(k, v)| {
            let v = String::from_utf8(v)
                .unwrap()
                .replace("REPLACE-with-a-bcrypt-hash", &hash);
            (k, v.into_bytes())
        })
        .collect();
    kubelet_volume(&base.join("users"), &users);
    let tls_keys: BTreeSet<String> = string_data(&objects["Secret/portcullis-tls"])
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        tls_keys,
        BTreeSet::from(["tls.crt".to_string(), "tls.key".to_string()])
    );
    let (cert, key) = tls_pair();
    kubelet_volume(
        &base.join("tls"),
        &[
            ("tls.crt".into(), cert.into_bytes()),
            ("tls.key".into(), key.into_bytes()),
        ],
    );
    let token_dir = tempfile::tempdir().unwrap();
    let (token_key, token_cert) =
        portcullis::token::generate_dev_keypair(token_dir.path()).unwrap();
    let token_files: Vec<(String, Vec<u8>)> = string_data(&objects["Secret/portcullis-token"])
        .into_iter()
        .map(|(k, _)| {
            let source = if k.ends_with(".key") {
                &token_key
            } else {
                &token_cert
            };
            (k, std::fs::read(source).unwrap())
        })
        .collect();
    kubelet_volume(&base.join("token"), &token_files);
    kubelet_volume(
        &base.join("redis"),
        &[("password".into(), b"a-redis-password".to_vec())],
    );

    let out = portcullis_check(&base.join("config/proxy.yaml"));
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rules: usize = string_data(&objects["ConfigMap/portcullis-acl"])
        .iter()
        .map(|(_, v)| String::from_utf8_lossy(v).matches("- match:").count())
        .sum();
    assert!(
        stdout.contains(&format!("{rules} ACL rules")) && stdout.contains("(TLS)"),
        "{stdout}"
    );
}

// ---------------------------------------------------------------------------------------------
// systemd

#[test]
fn systemd_unit_verifies() {
    let unit = text(root().join("deploy/systemd/portcullis.service"));
    for directive in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "ConfigurationDirectory=portcullis",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
    ] {
        assert!(
            unit.lines().any(|l| l.trim() == directive),
            "{directive} missing"
        );
    }
    assert!(
        unit.lines()
            .any(|l| l.starts_with("ExecStartPre=") && l.contains(" check")),
        "ExecStartPre=… check missing"
    );
    // systemd-analyze verify wants every Exec* binary to exist: point them at the built one.
    let binary = env!("CARGO_BIN_EXE_portcullis");
    assert!(unit.contains("/usr/local/bin/portcullis"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.service");
    write(&path, unit.replace("/usr/local/bin/portcullis", binary));
    let Some(out) = run_tool(
        "systemd-analyze",
        &["verify", path.to_str().unwrap()],
        dir.path(),
    ) else {
        return;
    };
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}",
        show(&out)
    );
    // Problems with other units on this machine are not ours; any with this one are.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("portcullis.service"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// docs/configuration.md covers every key

/// The backquoted names after "expected" in serde's "unknown field `zz_probe`, expected one of
/// `a`, `b`" (or "expected `a` or `b`"), when `message` is that error.
fn expected_fields(message: &str) -> Option<Vec<String>> {
    let rest = message.split("unknown field `zz_probe`").nth(1)?;
    let rest = rest.split("expected").nth(1)?;
    Some(
        rest.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect(),
    )
}

/// `{a: {b: {VALUE}}}` for the path `[a, b]`; `*` stands for a free-form key (a user name).
fn nested(path: &[String], value: &str) -> String {
    let mut doc = value.to_string();
    for key in path.iter().rev() {
        let key = if key == "*" { "zz_probe" } else { key.as_str() };
        doc = format!("{{{key}: {doc}}}");
    }
    doc
}

/// The error `Config::parse` gives for `doc`, if any.
fn parse_error(doc: &str) -> Option<String> {
    let path = Path::new("/nonexistent/proxy.yaml");
    match portcullis::config::Config::parse(doc, path) {
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    }
}

/// The fields of the mapping at `path`, or `None` when it is not a struct: an unknown key is
/// put there and serde's complaint lists the known ones. A free-form map (users by name) is
/// looked into one level deeper, as `*`.
fn discover(path: &[String], found: &mut BTreeSet<String>) {
    assert!(path.len() < 6, "runaway discovery at {path:?}");
    let direct = parse_error(&nested(path, "{zz_probe: 1}"));
    let (fields, prefix) = match direct.as_deref().and_then(expected_fields) {
        Some(f) => (f, path.to_vec()),
        None => {
            let deeper = parse_error(&nested(path, "{zz_probe: {zz_probe: 1}}"));
            // A list of mappings (`auth.federation`): its items' fields, named without an index.
            let items = parse_error(&nested(path, "[{zz_probe: 1}]"));
            match (
                deeper.as_deref().and_then(expected_fields),
                items.as_deref().and_then(expected_fields),
            ) {
                (Some(f), _) if !path.is_empty() => {
                    let mut p = path.to_vec();
                    p.push("*".into());
                    (f, p)
                }
                (_, Some(f)) if !path.is_empty() => (f, path.to_vec()),
                _ => return,
            }
        }
    };
    assert!(!fields.is_empty(), "no fields listed at {path:?}");
    for field in fields {
        let mut p = prefix.clone();
        p.push(field);
        found.insert(p.join("."));
        discover(&p, found);
    }
}

fn accepted_config_keys() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    discover(&[], &mut found);
    found
}

/// The backquoted first cells of the table between `<!-- NAME:begin -->` and `<!-- NAME:end -->`.
fn documented_keys(doc: &str, name: &str) -> BTreeSet<String> {
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let start = doc
        .find(&begin)
        .unwrap_or_else(|| panic!("{begin} missing"))
        + begin.len();
    let stop = doc[start..]
        .find(&end)
        .unwrap_or_else(|| panic!("{end} missing"))
        + start;
    doc[start..stop]
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .map(|l| l.split('`').next().unwrap().to_string())
        .collect()
}

#[test]
fn key_discovery_finds_what_it_should() {
    // The discovery itself must work, or the documentation test below proves nothing.
    let keys = accepted_config_keys();
    assert!(keys.len() > 30, "{keys:?}");
    for sample in [
        "listen",
        "tls.cert",
        "auth.token.key",
        "auth.users.*.password",
        "auth.federation.issuer",
    ] {
        assert!(keys.contains(sample), "{sample} not discovered: {keys:?}");
    }
}

#[test]
fn every_config_key_is_documented_and_every_documented_key_exists() {
    let doc = text(root().join("docs/configuration.md"));
    let accepted = accepted_config_keys();
    let documented = documented_keys(&doc, "config-keys");
    let undocumented: Vec<_> = accepted.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "keys accepted by src/config.rs but missing from the table in docs/configuration.md: {undocumented:?}"
    );
    let unknown: Vec<_> = documented.difference(&accepted).collect();
    assert!(
        unknown.is_empty(),
        "keys documented in docs/configuration.md that the parser refuses: {unknown:?}"
    );
}

#[test]
fn every_acl_key_is_documented() {
    // The ACL loader names its known keys when it meets an unknown one.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path().join("proxy.yaml"),
        "upstream: http://127.0.0.1:5001\nacl: acl.yaml\n",
    );
    write(
        dir.path().join("acl.yaml"),
        "- match: {zz_probe: x}\n  actions: [zz_probe]\n  zz_probe: x\n",
    );
    let out = portcullis_check(&dir.path().join("proxy.yaml"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let between = |line: &str, open: &str| -> Vec<String> {
        let start = line.find(open).unwrap() + open.len();
        let end = line[start..].find(')').unwrap() + start;
        line[start..end]
            .split([',', ' '])
            .map(|w| w.trim_matches(|c| c == '`' || c == '"'))
            .filter(|w| !w.is_empty() && *w != "and")
            .map(str::to_string)
            .collect()
    };
    let line_with = |needle: &str| {
        stderr
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` message in:\n{stderr}"))
            .to_string()
    };
    let rule_keys = between(&line_with("unknown key in a rule"), "has only ");
    let match_keys = between(&line_with("unknown match key"), "(known: ");
    let actions = between(&line_with("unknown action"), "(known: ");
    assert!(
        rule_keys.len() >= 3 && match_keys.len() >= 5 && actions.len() >= 4,
        "{stderr}"
    );

    let doc = text(root().join("docs/configuration.md"));
    let documented = documented_keys(&doc, "acl-keys");
    let mut expected: BTreeSet<String> = rule_keys.into_iter().collect();
    expected.extend(match_keys.iter().map(|k| format!("match.{k}")));
    assert_eq!(
        documented, expected,
        "the ACL table of docs/configuration.md differs from what the loader accepts"
    );
    let actions_row = doc
        .lines()
        .find(|l| l.starts_with("| `actions` |"))
        .unwrap();
    for action in actions {
        assert!(
            actions_row.contains(&format!("`{action}`")),
            "action {action} undocumented"
        );
    }
}
