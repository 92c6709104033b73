//! The audit log's writer: lines are handed to one thread through a bounded queue and written
//! to stdout in batches every few milliseconds, so a request never waits on the log's pipe or
//! disk, nor pays for waking the writer. When the queue is
//! full (the reader of stdout is slower than the traffic), a line is dropped and counted —
//! `portcullis_audit_lines_dropped_total` — rather than stalling requests.
//!
//! Line buffers go back to the requests through a second queue, so in steady state writing a
//! line allocates nothing.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

/// Lines waiting to be written, at most.
pub const QUEUE: usize = 8192;
/// Buffers kept for reuse, at most.
const POOL: usize = 256;
/// Buffers that grew past this are not reused (a very long path made them large).
const POOL_BUFFER_MAX: usize = 16 * 1024;
/// How often the writer wakes to write what was queued. Requests never wake it: a wake-up
/// per line (a futex call on the request's thread and a context switch) cost more CPU than
/// the line itself, so the writer looks at the queue on its own schedule instead: one write
/// per tick at most, and a line reaches stdout at most this late.
const TICK: Duration = Duration::from_millis(20);

/// Where audit lines go: a queue to the writer thread.
pub struct Writer {
    lines: Sender<Vec<u8>>,
    pool: Receiver<Vec<u8>>,
    dropped: Arc<AtomicU64>,
    on_drop: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
    /// Answered by the writer thread when everything queued before the ask is written.
    flushed: Sender<Sender<()>>,
}

impl Writer {
    /// Starts the writer thread writing to `out` (stdout in `serve`).
    pub fn start(out: Box<dyn Write + Send>) -> std::io::Result<Writer> {
        let (lines_tx, lines_rx) = bounded::<Vec<u8>>(QUEUE);
        let (pool_tx, pool_rx) = bounded::<Vec<u8>>(POOL);
        let (flush_tx, flush_rx) = bounded::<Sender<()>>(4);
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(out, lines_rx, pool_tx, flush_rx))?;
        Ok(Writer {
            lines: lines_tx,
            pool: pool_rx,
            dropped: Arc::new(AtomicU64::new(0)),
            on_drop: Mutex::new(None),
            flushed: flush_tx,
        })
    }

    /// A cleared buffer to format a line into (reused when one is free).
    pub fn buffer(&self) -> Vec<u8> {
        self.pool
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(512))
    }

    /// Queues one formatted line; never blocks. A full queue drops it and counts the drop.
    pub fn send(&self, line: Vec<u8>) {
        match self.lines.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                if let Ok(hook) = self.on_drop.lock() {
                    if let Some(hook) = hook.as_ref() {
                        hook();
                    }
                }
            }
        }
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Calls `hook` for every line dropped from now on (the metric).
    pub fn on_drop(&self, hook: Box<dyn Fn() + Send + Sync>) {
        if let Ok(mut slot) = self.on_drop.lock() {
            *slot = Some(hook);
        }
    }

    /// Waits (at most `within`) until every line queued so far is written: at shutdown.
    pub fn flush(&self, within: Duration) {
        let (done_tx, done_rx) = bounded(1);
        if self.flushed.send_timeout(done_tx, within).is_ok() {
            let _ = done_rx.recv_timeout(within);
        }
    }
}

fn write_loop(
    mut out: Box<dyn Write + Send>,
    lines: Receiver<Vec<u8>>,
    pool: Sender<Vec<u8>>,
    flushes: Receiver<Sender<()>>,
) {
    let mut batch: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        // Sleeps a tick, or less when asked to flush (at shutdown).
        let flush = match flushes.recv_timeout(TICK) {
            Ok(done) => Some(done),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // Everything queued goes out, in writes of at most 256 KiB.
        loop {
            while batch.len() < 256 * 1024 {
                match lines.try_recv() {
                    Ok(line) => {
                        batch.extend_from_slice(&line);
                        recycle(&pool, line);
                    }
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                break;
            }
            // A failing stdout (closed pipe) loses lines; nothing better to do with them.
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            batch.clear();
        }
        if let Some(done) = flush {
            let _ = done.send(());
        }
    }
}

fn recycle(pool: &Sender<Vec<u8>>, mut line: Vec<u8>) {
    if line.capacity() <= POOL_BUFFER_MAX {
        line.clear();
        let _ = pool.try_send(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` that hands what it got to the test, and can be made to block.
    struct Sink(Arc<Mutex<Vec<u8>>>, Arc<Mutex<()>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _held = self.1.lock().unwrap();
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_written_in_order_and_a_full_queue_drops_and_counts() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Mutex::new(()));
        let w = Writer::start(Box::new(Sink(written.clone(), gate.clone()))).unwrap();
        let counted = Arc::new(AtomicU64::new(0));
        let c = counted.clone();
        w.on_drop(Box::new(move || {
            c.fetch_add(1, Ordering::Relaxed);
        }));
        for i in 0..10 {
            let mut b = w.buffer();
            b.extend_from_slice(format!("{i}\n").as_bytes());
            w.send(b);
        }
        w.flush(Duration::from_secs(5));
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert_eq!(text, (0..10).map(|i| format!("{i}\n")).collect::<String>());
        assert_eq!(w.dropped(), 0);

        // The output blocks: the writer takes one batch and waits in `write`, the queue fills,
        // the rest is dropped and counted; sending never waits, and every line is either
        // written or counted.
        written.lock().unwrap().clear();
        let held = gate.lock().unwrap();
        let sent = QUEUE * 40;
        let started = std::time::Instant::now();
        for _ in 0..sent {
            w.send(b"x\n".to_vec());
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(w.dropped() > 0);
        assert_eq!(counted.load(Ordering::Relaxed), w.dropped());
        drop(held);
        w.flush(Duration::from_secs(5));
        let lines = written.lock().unwrap().len() / 2;
        assert_eq!(lines as u64 + w.dropped(), sent as u64);
    }
}
