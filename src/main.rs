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
        #[arg(long)]
        account: String,
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
    /// Read a password (at most 72 bytes: bcrypt reads no more) from stdin and print its bcrypt
    /// hash for `users:` or htpasswd.
    HashPassword {
        /// bcrypt cost.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=31))]
        cost: u32,
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
            ip,
            labels,
            scopes,
        } => explain(&cli.config, &account, ip, &labels, &scopes),
        Command::HashPassword { cost } => hash_password(cost),
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
        upstream = %config.upstream.address,
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
                config.upstream.address
            );
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
    account: &str,
    ip: Option<IpAddr>,
    label_args: &[String],
    scopes: &[String],
) -> anyhow::Result<()> {
    use portcullis::explain::{self, Asker, Scope};
    let (config, built, _) = load(path).map_err(|e| anyhow!("invalid configuration:\n{e}"))?;
    let mut labels = explain::static_labels(&config, account);
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
        let mut answer = explain::explain(&built.state.acl, asker, &scope);
        answer.scope = text.clone();
        println!("{answer}");
    }
    Ok(())
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
