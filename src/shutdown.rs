//! Graceful shutdown that waits for the requests in flight, not for a fixed time.
//!
//! Pingora's own SIGTERM handling sleeps a fixed grace period and then cancels whatever is
//! still running, which either delays every shutdown or cuts a long upload. Here SIGTERM
//! first puts the proxy in *draining* mode (`/readyz` turns 503; every answer closes its
//! connection; new requests without a body get `503` with `Connection: close`, which load
//! balancers replay elsewhere, while requests with a body — an upload chunk a balancer could
//! not replay — are still served), waits until no request is in flight or the drain timeout
//! passes, and only then lets Pingora shut down. With a `shutdown_delay`, draining lasts at
//! least that long even when nothing is in flight: until then a load balancer that has not yet
//! seen `/readyz` fail may still send requests, and once the listener is gone the one whose
//! body was already on its way is lost. SIGINT drains the same way (a second one
//! stops at once); SIGQUIT keeps Pingora's socket hand-over upgrade.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};

/// Requests in flight and whether the process is draining.
#[derive(Debug, Default)]
pub struct Drain {
    in_flight: AtomicUsize,
    draining: AtomicBool,
}

/// Held by each request while it runs; dropping it (however the request ends) counts it out.
#[derive(Debug)]
pub struct InFlight(Arc<Drain>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drain {
    /// A new, idle tracker.
    pub fn new() -> Arc<Drain> {
        Arc::new(Drain::default())
    }

    /// Counts a request in until the returned guard is dropped.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// True once SIGTERM arrived: new requests are turned away.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Requests now running.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Starts draining: from now on new requests are turned away (or served and their
    /// connections closed, see the proxy).
    pub fn start(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Starts draining and waits until at most `allowance` requests are running (the caller's
    /// own, if it asks from inside a request) or `timeout` passes. Returns whether it drained.
    pub async fn drain(&self, allowance: usize, timeout: Duration) -> bool {
        self.draining.store(true, Ordering::Release);
        let start = Instant::now();
        while self.in_flight() > allowance {
            if start.elapsed() >= timeout {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

/// The signal handler given to Pingora's `Server::run`.
pub struct SignalWatch {
    drain: Arc<Drain>,
    timeout: Duration,
    delay: Duration,
    on_drain: Option<Box<dyn Fn() + Send + Sync>>,
}

impl SignalWatch {
    /// Drains `drain` for at most `timeout` on SIGTERM.
    pub fn new(drain: Arc<Drain>, timeout: Duration) -> Self {
        SignalWatch {
            drain,
            timeout,
            delay: Duration::ZERO,
            on_drain: None,
        }
    }

    /// Keeps draining for at least `delay` after the signal, even with nothing in flight, so
    /// that load balancers see `/readyz` fail before the listener closes; the wait for
    /// requests in flight (`timeout`) starts after it.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Also runs `f` when draining starts (readiness turns 503 so balancers stop sending).
    pub fn on_drain(mut self, f: Box<dyn Fn() + Send + Sync>) -> Self {
        self.on_drain = Some(f);
        self
    }
}

#[async_trait]
impl ShutdownSignalWatch for SignalWatch {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            tracing::error!("cannot install signal handlers; stopping");
            return ShutdownSignal::FastShutdown;
        };
        let which = tokio::select! {
            _ = quit.recv() => return ShutdownSignal::GracefulUpgrade,
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(
            signal = which,
            in_flight = self.drain.in_flight(),
            delay = ?self.delay,
            "draining requests in flight"
        );
        self.drain.start();
        if let Some(f) = &self.on_drain {
            f();
        }
        let drained = async {
            tokio::time::sleep(self.delay).await;
            self.drain.drain(0, self.timeout).await
        };
        // A second SIGINT or SIGTERM (an impatient Ctrl-C) stops at once.
        tokio::select! {
            drained = drained => {
                if drained {
                    tracing::info!("drained; shutting down");
                } else {
                    tracing::warn!(in_flight = self.drain.in_flight(), timeout = ?self.timeout, "drain timeout reached; shutting down anyway");
                }
                ShutdownSignal::GracefulTerminate
            }
            _ = int.recv() => ShutdownSignal::FastShutdown,
            _ = term.recv() => ShutdownSignal::FastShutdown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_guards() {
        let drain = Drain::new();
        let guard = drain.enter();
        let other = drain.enter();
        assert_eq!(drain.in_flight(), 2);
        drop(other);
        assert!(
            !drain.drain(0, Duration::from_millis(50)).await,
            "one still in flight"
        );
        assert!(drain.is_draining());
        let d = drain.clone();
        let waiter = tokio::spawn(async move { d.drain(0, Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(30)).await;
        drop(guard);
        assert!(waiter.await.unwrap());
        assert_eq!(drain.in_flight(), 0);
    }
}
