//! The audit log: one JSON line per request (fields in `docs/operations.md`, "The audit
//! line"), formatted by [`line`](mod@line) into a reused buffer and written off the request path by
//! [`writer`].
//!
//! `serve` with JSON logs installs the writer ([`install`]); without it (text logs, tests that
//! drive the library) the line goes through `tracing` as before. Either way the line is
//! written only when `tracing` has the `audit` target enabled at `info` (`RUST_LOG=warn`
//! turns it off, as it always did).

pub mod line;
pub mod writer;

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

pub use line::Request;
use writer::Writer;

static WRITER: OnceLock<Writer> = OnceLock::new();

/// Sends request audit lines to stdout through the background writer from now on.
pub fn install() -> std::io::Result<()> {
    let w = Writer::start(Box::new(std::io::stdout()))?;
    // Installed once per process; a second call keeps the first writer.
    let _ = WRITER.set(w);
    Ok(())
}

/// Calls `hook` for every audit line dropped because the writer fell behind (the metric).
pub fn on_drop(hook: Box<dyn Fn() + Send + Sync>) {
    if let Some(w) = WRITER.get() {
        w.on_drop(hook);
    }
}

/// Writes everything queued (at shutdown), waiting at most two seconds.
pub fn flush() {
    if let Some(w) = WRITER.get() {
        w.flush(Duration::from_secs(2));
    }
}

/// Logs one request's audit line.
pub fn request(line: &Request<'_>) {
    if !tracing::enabled!(target: "audit", tracing::Level::INFO) {
        return;
    }
    let Some(w) = WRITER.get() else {
        tracing::info!(
            target: "audit",
            client = %line.client,
            account = line.account,
            method = line.method,
            path = line.path,
            repository = line.repository,
            action = line.action,
            decision = line.decision,
            rule = %line.rule.unwrap_or(&""),
            scopes_requested = line.scopes_requested,
            scopes_granted = line.scopes_granted,
            key_id = line.key_id,
            cache = line.cache,
            status = line.status,
            bytes_in = line.bytes_in,
            bytes_out = line.bytes_out,
            duration_ms = line.duration_ms,
            error = line.error,
            "request"
        );
        return;
    };
    let mut buf = w.buffer();
    line.write_json(SystemTime::now(), &mut buf);
    w.send(buf);
}
