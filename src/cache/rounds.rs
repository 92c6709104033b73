//! Coalesced revalidation: requests for one stale answer by tag share one registry request —
//! but only one **sent after they arrived**, so sharing never makes an answer older than
//! forwarding the request would have.
//!
//! Per key there is at most one round *running* (its request is with the registry) and one
//! *waiting* (it starts when the running one ends). A request that arrives joins the waiting
//! round, or opens it; it never joins the running round, whose question was asked before the
//! request came in (a write that finished in between would be missed). So with `tag_ttl: 0`
//! every answer still reflects the registry as it was after the request arrived, while a
//! hundred concurrent pulls of one tag cost the registry about one request per round trip
//! instead of a hundred.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::entry::Entry;
use super::key::Key;

/// What a round found: the answer to serve, or `None` when the request must be forwarded
/// (the registry said something other than "unchanged" or a cacheable `200`, or failed).
pub type Outcome = Option<Arc<Entry>>;

/// One registry request and everyone waiting for its answer.
struct Round {
    done: watch::Receiver<Option<Outcome>>,
}

impl Round {
    fn new() -> (Arc<Round>, watch::Sender<Option<Outcome>>) {
        let (tx, rx) = watch::channel(None);
        (Arc::new(Round { done: rx }), tx)
    }

    /// Waits for the round's outcome; `None` when its leader went away without one.
    async fn outcome(&self) -> Option<Outcome> {
        let mut done = self.done.clone();
        let found = done.wait_for(Option::is_some).await.ok()?;
        found.clone()
    }
}

#[derive(Default)]
struct Slot {
    running: Option<Arc<Round>>,
    waiting: Option<Arc<Round>>,
}

/// The rounds of every key being revalidated now.
#[derive(Default)]
pub struct Rounds {
    slots: Arc<Mutex<HashMap<Key, Slot>>>,
}

/// A request's part in a round.
pub enum Role {
    /// Ask the registry (once [`Lead::start`] says so), then [`Lead::finish`].
    Lead(Lead),
    /// Another request asks; wait for its answer with [`Follow::outcome`].
    Follow(Follow),
}

/// The request that asks the registry for its round.
pub struct Lead {
    key: Key,
    round: Arc<Round>,
    tx: Option<watch::Sender<Option<Outcome>>>,
    after: Option<Arc<Round>>,
    slots: Arc<Mutex<HashMap<Key, Slot>>>,
}

/// A request waiting for a round another request leads.
pub struct Follow(Arc<Round>);

impl Rounds {
    /// Joins the round for `key` that has not asked yet, or opens one.
    pub fn join(&self, key: &Key) -> Role {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = slots.entry(key.clone()).or_default();
        if let Some(waiting) = &slot.waiting {
            return Role::Follow(Follow(waiting.clone()));
        }
        let (round, tx) = Round::new();
        let after = match &slot.running {
            Some(running) => {
                slot.waiting = Some(round.clone());
                Some(running.clone())
            }
            None => {
                slot.running = Some(round.clone());
                None
            }
        };
        Role::Lead(Lead {
            key: key.clone(),
            round,
            tx: Some(tx),
            after,
            slots: self.slots.clone(),
        })
    }

    /// Keys with a round open (for tests: everything is cleaned up).
    pub fn open(&self) -> usize {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Lead {
    /// Waits until the round before this one (if any) has its answer, or `at_most` (a stuck
    /// registry request must not hold this one); from then on this round is the running one
    /// and takes no more followers. True when there was a round before to wait for (it may
    /// have changed what is stored).
    pub async fn start(&mut self, at_most: Duration) -> bool {
        let Some(after) = self.after.take() else {
            return false;
        };
        let _ = tokio::time::timeout(at_most, after.outcome()).await;
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get_mut(&self.key) {
            if slot
                .waiting
                .as_ref()
                .is_some_and(|w| Arc::ptr_eq(w, &self.round))
            {
                slot.waiting = None;
            }
            slot.running = Some(self.round.clone());
        }
        true
    }

    /// Hands the registry's answer to the followers.
    pub fn finish(mut self, outcome: Outcome) {
        if let Some(tx) = self.tx.take() {
            tx.send_replace(Some(outcome));
        }
    }
}

impl Drop for Lead {
    /// Leaves the slot (finished, or dropped with its request: followers then see no
    /// outcome and forward their requests themselves).
    fn drop(&mut self) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get_mut(&self.key) {
            let mine =
                |r: &Option<Arc<Round>>| r.as_ref().is_some_and(|r| Arc::ptr_eq(r, &self.round));
            if mine(&slot.running) {
                slot.running = None;
            }
            if mine(&slot.waiting) {
                slot.waiting = None;
            }
            if slot.running.is_none() && slot.waiting.is_none() {
                slots.remove(&self.key);
            }
        }
        // The sender goes with `self`: followers still waiting wake up with no outcome.
    }
}

impl Follow {
    /// The round's answer; `None` when its leader went away without one.
    pub async fn outcome(&self) -> Option<Outcome> {
        self.0.outcome().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::Accepts;

    fn key() -> Key {
        Key {
            repository: "a".into(),
            reference: "latest".into(),
            accepts: Accepts::of(&http::HeaderMap::new()).unwrap(),
            generation: 0,
        }
    }

    #[tokio::test]
    async fn arrivals_during_a_round_share_the_next_one_never_the_running_one() {
        let rounds = Rounds::default();
        let Role::Lead(first) = rounds.join(&key()) else {
            panic!("the first request leads");
        };
        // first is running (asked the registry). Arrivals now must wait for a new round.
        let Role::Lead(mut second) = rounds.join(&key()) else {
            panic!("a request arriving during a running round opens the next one");
        };
        let Role::Follow(third) = rounds.join(&key()) else {
            panic!("the next arrival joins the waiting round");
        };
        let started = tokio::spawn(async move {
            second.start(Duration::from_secs(10)).await;
            second
        });
        tokio::task::yield_now().await;
        assert!(
            !started.is_finished(),
            "the next round waits for the running one"
        );
        first.finish(None);
        let second = started.await.unwrap();
        // second runs now: a new arrival opens yet another round rather than joining it.
        assert!(matches!(rounds.join(&key()), Role::Lead(_)));
        second.finish(None);
        assert!(matches!(third.outcome().await, Some(None)));
        assert_eq!(rounds.open(), 0, "every slot is cleaned up");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_round_holds_the_next_one_only_so_long() {
        let rounds = Rounds::default();
        let Role::Lead(_stuck) = rounds.join(&key()) else {
            panic!("the first request leads");
        };
        let Role::Lead(mut next) = rounds.join(&key()) else {
            panic!("opens the next round");
        };
        assert!(
            next.start(Duration::from_secs(10)).await,
            "it waited for the stuck one"
        );
        // It runs now: later arrivals open a round of their own rather than join one whose
        // question is already out.
        assert!(matches!(rounds.join(&key()), Role::Lead(_)));
    }

    #[tokio::test]
    async fn followers_of_a_leader_that_went_away_forward_their_requests() {
        let rounds = Rounds::default();
        let Role::Lead(first) = rounds.join(&key()) else {
            panic!("the first request leads");
        };
        let Role::Lead(second) = rounds.join(&key()) else {
            panic!("opens the next round");
        };
        let Role::Follow(third) = rounds.join(&key()) else {
            panic!("joins it");
        };
        drop(second);
        assert!(third.outcome().await.is_none());
        first.finish(None);
        assert_eq!(rounds.open(), 0);
    }
}
