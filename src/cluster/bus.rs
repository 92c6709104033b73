//! A small publish/subscribe bus over Redis, for parts that must tell every replica something
//! happened (the manifest cache publishes its evictions here).
//!
//! Redis pub/sub delivers a message only to subscribers connected at that moment: a replica
//! whose subscription connection drops misses whatever is published meanwhile. So a
//! [`Subscription`] does not only yield [`Event::Message`]s: it says [`Event::Lost`] when its
//! connection is gone (or could not be made), and [`Event::Restored`] once it is subscribed
//! again. A subscriber that caches must treat `Lost` as "anything may have changed" (stop
//! trusting, or flush, its cache) until `Restored`. A silent connection is noticed by a ping
//! every [`super::PROBE_INTERVAL`].
//!
//! Channels are named under the key prefix (`<prefix>bus:<channel>`), so fleets sharing one
//! Redis with different prefixes do not hear each other.
//!
//! ```no_run
//! # async fn demo(cluster: portcullis::cluster::Cluster) {
//! use portcullis::cluster::bus::Event;
//! let mut evictions = cluster.subscribe("cache-evict").await;
//! cluster.publish("cache-evict", b"team/app").await.ok();
//! while let Some(event) = evictions.next().await {
//!     match event {
//!         Event::Message(bytes) => { /* forget the entry named by bytes */ }
//!         Event::Lost => { /* stop trusting the cache */ }
//!         Event::Restored => { /* trust it again (after flushing it) */ }
//!     }
//! }
//! # }
//! ```

use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::sync::mpsc;

use super::{Cluster, ClusterError, PROBE_INTERVAL};

/// Events buffered for a subscriber that is not reading; past that, the bus waits for it.
const BUFFER: usize = 1024;

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message published on the channel.
    Message(Bytes),
    /// The subscription is not connected: messages published from now on until
    /// [`Event::Restored`] are missed.
    Lost,
    /// Subscribed again after [`Event::Lost`].
    Restored,
}

/// A subscription to one channel; unsubscribes when dropped.
pub struct Subscription {
    events: mpsc::Receiver<Event>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscription {
    /// The next event; `None` only once the cluster is gone.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Cluster {
    /// Publishes `payload` on `channel` to every replica subscribed now; how many received it.
    /// Fails at once while Redis is known to be down.
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> Result<u64, ClusterError> {
        let name = self.key(&["bus", channel]);
        let payload = payload.to_vec();
        self.run(move |mut c| async move {
            redis::cmd("PUBLISH")
                .arg(name)
                .arg(payload)
                .query_async::<u64>(&mut c)
                .await
        })
        .await
    }

    /// Subscribes to `channel`. Returns once the first attempt to subscribe has ended: on
    /// success, every message published after this returns is delivered; on failure, the
    /// first event is [`Event::Lost`], and the subscription keeps trying by itself.
    pub async fn subscribe(&self, channel: &str) -> Subscription {
        let (tx, events) = mpsc::channel(BUFFER);
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        let task = self.handle().spawn(listen(
            self.client(),
            self.key(&["bus", channel]),
            self.timeout(),
            tx,
            first_tx,
        ));
        let _ = first_rx.await;
        Subscription { events, task }
    }
}

/// One subscription connection, kept up until the subscriber goes away.
async fn listen(
    client: redis::Client,
    channel: String,
    timeout: std::time::Duration,
    tx: mpsc::Sender<Event>,
    first: tokio::sync::oneshot::Sender<()>,
) {
    let mut first = Some(first);
    let mut lost = false;
    loop {
        let connected =
            tokio::time::timeout(timeout.max(std::time::Duration::from_secs(1)), async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            })
            .await;
        if let Ok(Ok(pubsub)) = connected {
            if std::mem::take(&mut lost) && tx.send(Event::Restored).await.is_err() {
                return;
            }
            if let Some(f) = first.take() {
                let _ = f.send(());
            }
            let (mut sink, mut stream) = pubsub.split();
            loop {
                tokio::select! {
                    message = stream.next() => match message {
                        Some(m) => {
                            let payload = Bytes::copy_from_slice(m.get_payload_bytes());
                            if tx.send(Event::Message(payload)).await.is_err() {
                                return;
                            }
                        }
                        None => break,
                    },
                    () = tokio::time::sleep(PROBE_INTERVAL) => {
                        let ping = tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await;
                        if !matches!(ping, Ok(Ok(_))) {
                            break;
                        }
                    }
                }
            }
        }
        // Not subscribed (any more).
        if !std::mem::replace(&mut lost, true) && tx.send(Event::Lost).await.is_err() {
            return;
        }
        if let Some(f) = first.take() {
            let _ = f.send(());
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}
