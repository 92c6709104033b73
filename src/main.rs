//! The `portcullis` command line: parse arguments, call into the library. Nothing else.

use std::io::{IsTerminal, Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand, ValueEnum};

use portcullis::config::Config;
use portcullis::diagnostic::Diagnostics;
use portcullis::state::State;

/// An authenticating, authorizing reverse proxy for container registries.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The configuration file.
    #[arg(
        short,
        long,
        global = true,
        env = "PORTCULLIS_CONFIG",
        default_value = "proxy.yaml"
    )]
    config: PathBuf,
    /// Log format on stdout.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum TestFormat {
    Text,
    Junit,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Serve,
    /// Load the configuration, users and ACL as `serve` would; print `ok` or every error.
    Check,
    /// Show which actions the ACL grants for scopes, and which rule decided.
    Explain {
        /// The account asking (`""` for anonymous).
        #[arg(long, required_unless_present = "key", conflicts_with = "key")]
        account: Option<String>,
        /// An access key's id: its account's rights narrowed by the key's scopes, as the
        /// proxy decides for a login with that key.
        #[arg(long)]
        key: Option<String>,
        /// The client address.
        #[arg(long)]
        ip: Option<IpAddr>,
        /// A label `key=value` (repeatable); added to the account's own labels.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Scopes such as `repository:team/app:pull,push` or `registry:catalog:*`.
        #[arg(required = true)]
        scopes: Vec<String>,
    },
    /// Run ACL tests: each case is decided by the same matcher as the proxy; exit 0 when all
    /// pass, 1 otherwise.
    Test {
        /// Test files or folders; default: `acl_tests` from the configuration.
        paths: Vec<PathBuf>,
        /// Output: one line per case and a summary, or JUnit XML for CI systems.
        #[arg(long, value_enum, default_value_t = TestFormat::Text)]
        format: TestFormat,
    },
    /// Write a development token key pair (EC P-256 `token.key`, self-signed `token.crt`) for
    /// `auth.token.key` / `auth.token.certificate` and registry:2's `rootcertbundle`.
    GenTokenKey {
        /// Folder to write into; existing files are never overwritten.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
    },
    /// End every refresh token and web UI session of an account issued before now, on every
    /// replica at once (needs `cluster:`). Access tokens stay valid until they expire.
    Revoke {
        /// The account whose refresh tokens and sessions end.
        #[arg(long)]
        account: String,
    },
    /// Manage access keys in the file named by `auth.keys`.
    Key {
        #[command(subcommand)]
        action: KeyCommand,
    },
    /// Read a password (at most 72 bytes: bcrypt reads no more) from stdin and print its bcrypt
    /// hash for `users:` or htpasswd.
    HashPassword {
        /// bcrypt cost.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=31))]
        cost: u32,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Make a key and print its secret (once: only its hash is stored).
    Create {
        /// The account whose rights the key carries (at most).
        #[arg(long)]
        account: String,
        /// Narrow the key to `TYPE:NAME:ACTIONS` (repeatable), e.g.
        /// `repository:team/*:pull,push`; none: all of the account's rights.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// `90d`, `12h`, `2w`, an RFC 3339 time, or `never`.
        #[arg(long, default_value = "90d")]
        expires: String,
        /// What the key is for.
        #[arg(long, default_value = "")]
        description: String,
        /// The account need not exist in any backend (a robot account, no labels); without
        /// this the key stops working when its account is removed.
        #[arg(long)]
        robot: bool,
    },
    /// List the keys (never their secrets).
    List,
    /// Remove a key; the proxy refuses it from its next reload (at once, with the watcher).
    Revoke {
        /// The key's id (from `key list`).
        id: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&cli.config),
        Command::Check => return check(&cli.config),
        Command::Test { paths, format } => return acl_test(&cli.config, &paths, format),
        Command::Explain {
            account,
            key,
            ip,
            labels,
            scopes,
        } => explain(&cli.config, account, key, ip, &labels, &scopes),
        Command::Key { action } => key(&cli.config, action),
        Command::HashPassword { cost } => hash_password(cost),
        Command::Revoke { account } => revoke(&cli.config, &account),
        Command::GenTokenKey { dir } => gen_token_key(&dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => {
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .init();
            // Request audit lines: the same JSON, written by a background thread.
            if let Err(e) = portcullis::audit::install() {
                tracing::warn!(error = %e, "audit lines are written on the request path");
            }
        }
        LogFormat::Text => builder.init(),
    }
}

fn load(
    path: &Path,
) -> Result<
    (
        Arc<Config>,
        portcullis::state::Built,
        portcullis::state::Summary,
    ),
    Diagnostics,
> {
    let config = Arc::new(Config::load(path)?);
    let (built, summary) = State::build(config.clone())?;
    Ok((config, built, summary))
}

fn serve(path: &Path) -> anyhow::Result<()> {
    let (config, built, summary) =
        load(path).map_err(|e| anyhow!("invalid configuration:\n{e}"))?;
    for w in &built.warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(
        listen = %config.listen,
        upstreams = %config.upstreams.iter().map(|e| format!("{}={}", if e.prefix.is_empty() { "*" } else { &e.prefix }, e.settings.address)).collect::<Vec<_>>().join(","),
        tls = config.tls.is_some(),
        users = summary.users,
        htpasswd_users = summary.htpasswd_users,
        rules = summary.rules,
        challenge = ?config.auth.challenge,
        token_kid = built.state.token.as_ref().map(|t| t.kid()).unwrap_or(""),
        "portcullis starting"
    );
    let prepared = portcullis::server::prepare(path, config, built.state)?;
    prepared.run();
    portcullis::audit::flush();
    tracing::info!("portcullis stopped");
    Ok(())
}

fn check(path: &Path) -> ExitCode {
    match load(path) {
        Ok((config, built, summary)) => {
            for w in &built.warnings {
                println!("warning: {w}");
            }
            if let Err(code) = check_upstream_tls(&config) {
                return code;
            }
            println!(
                "ok: {} static users, {} htpasswd accounts, {} ACL rules, {} ACL tests passed; listen {}{}, upstream {}",
                summary.users,
                summary.htpasswd_users,
                summary.rules,
                summary.acl_tests,
                config.listen,
                if config.tls.is_some() {
                    " (TLS)"
                } else {
                    " (plain HTTP)"
                },
                config
                    .upstreams
                    .iter()
                    .map(|e| e.settings.address.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if let Some(keys) = summary.keys {
                println!("access keys: {keys}");
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

/// A trial handshake with each TLS registry: a certificate the configured trust refuses is an
/// error (every request would fail); a registry unreachable from where `check` runs is only a
/// warning (it may run on a build host).
fn check_upstream_tls(config: &Config) -> Result<(), ExitCode> {
    use portcullis::upstream::{check_handshake, Handshake};
    let text = std::fs::read_to_string(&config.file).unwrap_or_default();
    let tree = portcullis::yaml::parse_marked(&text).ok().flatten();
    let mut failed = false;
    for (i, entry) in config.upstreams.iter().enumerate() {
        // Where this entry's trust is written: its CA, its TLS section, else its URL.
        let candidates: Vec<String> = if text.contains("upstreams:") {
            ["tls.ca_certificate", "tls", "url"]
                .iter()
                .map(|k| format!("upstreams.{i}.{k}"))
                .collect()
        } else {
            ["upstream_tls.ca_certificate", "upstream_tls", "upstream"]
                .iter()
                .map(|k| k.to_string())
                .collect()
        };
        let (key, line) = candidates
            .iter()
            .find_map(|k| {
                let keys: Vec<&str> = k.split('.').collect();
                let node = portcullis::yaml::at_path(tree.as_ref()?, &keys)?;
                Some((k.clone(), node.line))
            })
            .unwrap_or_else(|| (candidates[candidates.len() - 1].clone(), 1));
        let address = &entry.settings.address;
        match check_handshake(&entry.settings) {
            Handshake::NotTls | Handshake::Verified => {}
            Handshake::Unreachable(why) => println!(
                "warning: {}:{line}: {key}: the registry at https://{address} is not reachable from here, so its TLS certificate was not checked: {why}",
                config.file.display()
            ),
            Handshake::Failed(why) => {
                eprintln!(
                    "error: {}:{line}: {key}: TLS handshake with the registry at https://{address} failed (is the CA the one that signed the registry's certificate, and the server name one it carries?): {why}",
                    config.file.display(),
                );
                failed = true;
            }
        }
    }
    if failed {
        Err(ExitCode::FAILURE)
    } else {
        Ok(())
    }
}

fn acl_test(path: &Path, paths: &[PathBuf], format: TestFormat) -> ExitCode {
    use portcullis::acl_tests::{junit, Suite};
    let fail = |errors: &Diagnostics| {
        for e in &errors.0 {
            eprintln!("error: {e}");
        }
        ExitCode::FAILURE
    };
    let config = match Config::load(path) {
        Ok(config) => Arc::new(config),
        Err(e) => return fail(&e),
    };
    let paths: Vec<PathBuf> = if paths.is_empty() {
        match &config.acl_tests {
            Some(p) => vec![p.clone()],
            None => {
                eprintln!(
                    "error: no ACL tests: name files or folders, or set `acl_tests` in {}",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
        }
    } else {
        paths.to_vec()
    };
    let (built, _) = match State::build_untested(config) {
        Ok(b) => b,
        Err(e) => return fail(&e),
    };
    let suite = match Suite::load_all(&paths) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let report = built.state.test(&suite);
    // Written, not printed: `portcullis test | head` must not panic on a closed pipe.
    let mut out = std::io::stdout().lock();
    let _ = match format {
        TestFormat::Junit => writeln!(out, "{}", junit::to_xml(&report)),
        TestFormat::Text => report
            .results
            .iter()
            .try_for_each(|result| writeln!(out, "{result}"))
            .and_then(|()| writeln!(out, "{}", report.summary())),
    };
    if report.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn explain(
    path: &Path,
    account: Option<String>,
    key_id: Option<String>,
    ip: Option<IpAddr>,
    label_args: &[String],
    scopes: &[String],
) -> anyhow::Result<()> {
    use portcullis::explain::{self, Asker, Scope};
    let (config, built, _) = load(path).map_err(|e| anyhow!("invalid configuration:\n{e}"))?;
    let key = match &key_id {
        None => None,
        Some(id) => {
            let store = built
                .state
                .authn
                .keys()
                .ok_or_else(|| anyhow!("no access keys: `auth.keys` is not set"))?;
            let (record, key_scopes) = store
                .get(id)
                .ok_or_else(|| anyhow!("no access key with id {id:?}"))?;
            if record.is_expired(std::time::SystemTime::now()) {
                bail!("access key {id} has expired: every login with it is refused");
            }
            println!(
                "access key {id}: account {:?}{}, scopes: {}",
                record.account,
                if record.robot {
                    " (robot)"
                } else if record.sso_labels.is_some() {
                    " (single sign-on, with the labels it was made with)"
                } else {
                    ""
                },
                if record.scopes.is_empty() {
                    "none (all of the account's rights)".to_owned()
                } else {
                    record.scopes.join(" ")
                }
            );
            Some((record.clone(), key_scopes.clone()))
        }
    };
    let account = match (&key, account) {
        (Some((record, _)), _) => record.account.clone(),
        (None, Some(account)) => account,
        (None, None) => bail!("--account or --key is required"),
    };
    let account = account.as_str();
    // A single sign-on person's key carries the labels it was made with; anyone else's are
    // the static users' (state others with --label).
    let mut labels = match key
        .as_ref()
        .and_then(|(record, _)| record.sso_labels.clone())
    {
        Some(recorded) => recorded,
        None => explain::static_labels(&config, account),
    };
    explain::add_labels(&mut labels, label_args).map_err(|e| anyhow!("--{e}"))?;
    let asker = Asker {
        account,
        labels: &labels,
        ip,
        service: portcullis::policy::DEFAULT_SERVICE,
    };
    // Every scope is checked before any is answered: a typo is an error, never "denied".
    let parsed = scopes
        .iter()
        .map(|text| Scope::parse_strict(text).map(|s| (text, s)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!(e))?;
    for (text, scope) in parsed {
        let mut answer = explain::explain_key(
            &built.state.acl,
            asker,
            &scope,
            key.as_ref().map(|(r, s)| (r.id.as_str(), s)),
        );
        answer.scope = text.clone();
        println!("{answer}");
        // With several registries (or a stripped prefix), which one the name reaches.
        let merged = config.upstreams.len() > 1 || config.upstreams.iter().any(|e| e.strip_prefix);
        if scope.kind == "repository" && merged {
            match portcullis::upstream::select::choose(&config.upstreams, &scope.name) {
                Some((i, name)) => println!(
                    "  served by upstreams[{i}] (prefix {:?}, {}) as {name}",
                    config.upstreams[i].prefix, config.upstreams[i].settings.address
                ),
                None => println!(
                    "  served by no registry: no entry of upstreams has a prefix of it (404)"
                ),
            }
        }
    }
    Ok(())
}

fn revoke(path: &Path, account: &str) -> anyhow::Result<()> {
    use portcullis::cluster::{revocations, Cluster};
    let config = Config::load(path).map_err(|e| anyhow!("invalid configuration:\n{e}"))?;
    let Some(settings) = &config.cluster else {
        bail!(
            "revoking across replicas needs `cluster:` (a Redis shared by the replicas) in {}. \
             Without it each replica keeps its own state: change or remove the account's password \
             (users file, htpasswd or LDAP), which ends its refresh tokens and UI sessions on every \
             replica at their next use",
            path.display()
        );
    };
    // As long as anything it revokes can live: a refresh token or a UI session.
    let keep = config
        .auth
        .token
        .as_ref()
        .map(|t| t.refresh_expiration)
        .unwrap_or_default()
        .max(config.ui.session_lifetime);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let cluster = Cluster::connect(settings, None).map_err(|e| anyhow!("cluster: {e}"))?;
        cluster
            .ping()
            .await
            .map_err(|e| anyhow!("cannot reach {}: {e}", settings.redis))?;
        let revoked = revocations::Revocations::new(Some(cluster));
        let now = std::time::SystemTime::now();
        revoked
            .revoke(&revocations::account(account), now, keep)
            .await
            .map_err(|e| anyhow!("revocation not stored in {}: {e}", settings.redis))?;
        println!(
            "revoked: every refresh token and web UI session of {account:?} issued before now ends on every replica; access tokens already issued stay valid until they expire (auth.token.expiration)"
        );
        Ok(())
    })
}

fn key(path: &Path, action: KeyCommand) -> anyhow::Result<()> {
    use portcullis::authn::keys;
    let file = Config::keys_path(path)
        .map_err(|e| anyhow!("invalid configuration:\n{e}"))?
        .ok_or_else(|| anyhow!("`auth.keys` is not set in {}", path.display()))?;
    let now = std::time::SystemTime::now();
    match action {
        KeyCommand::Create {
            account,
            scopes,
            expires,
            description,
            robot,
        } => {
            let expires = keys::present::parse_expiry(&expires, now).map_err(|e| anyhow!(e))?;
            let make = if robot {
                keys::create_robot
            } else {
                keys::create
            };
            let (record, secret) = make(&file, &account, &scopes, expires, &description)?;
            // The secret alone on stdout (for `| docker login --password-stdin`); the rest
            // on stderr.
            eprintln!(
                "created access key {} for {:?} (expires {}); the secret is shown only now:",
                record.id,
                record.account,
                record
                    .expires
                    .map(keys::file::format_time)
                    .unwrap_or_else(|| "never".into())
            );
            println!("{secret}");
        }
        KeyCommand::List => {
            let records = keys::list(&file)?;
            print!("{}", keys::present::table(&records, now));
        }
        KeyCommand::Revoke { id } => {
            let record = keys::revoke(&file, &id)?;
            println!("revoked access key {} of {:?}", record.id, record.account);
            share_key_revocation(path, &record)?;
        }
    }
    Ok(())
}

/// With `cluster:`, also tells every replica through Redis that the key is revoked, so it
/// is refused at once everywhere, not when the keys file reaches each replica. Kept until
/// the key would have expired (a year for keys that never expire).
fn share_key_revocation(
    path: &Path,
    record: &portcullis::authn::keys::Record,
) -> anyhow::Result<()> {
    use portcullis::cluster::{revocations, Cluster};
    let Ok(config) = Config::load(path) else {
        // The file revocation stands; the configuration has other problems `check` shows.
        return Ok(());
    };
    let Some(settings) = &config.cluster else {
        return Ok(());
    };
    let now = std::time::SystemTime::now();
    let keep = record
        .expires
        .and_then(|e| e.duration_since(now).ok())
        .unwrap_or(std::time::Duration::from_secs(365 * 86_400));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let cluster = Cluster::connect(settings, None).map_err(|e| anyhow!("cluster: {e}"))?;
        cluster.ping().await.map_err(|e| {
            anyhow!(
                "the key is removed from the keys file, but {} cannot be reached to refuse it on every replica at once: {e}",
                settings.redis
            )
        })?;
        revocations::Revocations::new(Some(cluster))
            .revoke(&revocations::key(&record.id), now, keep)
            .await
            .map_err(|e| anyhow!("the key is removed from the keys file, but the shared revocation was not stored in {}: {e}", settings.redis))?;
        println!("refused on every replica now (cluster: {})", settings.redis);
        Ok(())
    })
}

fn gen_token_key(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (key, cert) = portcullis::token::generate_dev_keypair(dir)
        .with_context(|| format!("writing a key pair into {}", dir.display()))?;
    let public = portcullis::token::SigningKey::load(&key).map_err(|d| anyhow!("{d}"))?;
    println!(
        "key: {}
certificate: {}
kid: {}",
        key.display(),
        cert.display(),
        public.public().kid()
    );
    Ok(())
}

fn hash_password(cost: u32) -> anyhow::Result<()> {
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Password: ").context("reading the password")?
    } else {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the password from stdin")?;
        s.strip_suffix("\r\n")
            .or_else(|| s.strip_suffix('\n'))
            .unwrap_or(&s)
            .to_owned()
    };
    if password.is_empty() {
        bail!("empty password");
    }
    let max = portcullis::authn::password::MAX_BYTES;
    if password.len() > max {
        bail!(
            "the password is {} bytes; bcrypt uses only the first {max}, so a longer password \
             cannot be represented (its first {max} bytes followed by anything would log in). \
             Use at most {max} bytes",
            password.len()
        );
    }
    println!("{}", bcrypt::hash(password, cost)?);
    Ok(())
}
