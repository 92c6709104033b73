//! Per-repository write generations: the counter a manifest write moves on, so that an answer
//! asked for before (or during) the write is never found again.
//!
//! Repositories share a fixed number of counters (by hash), so the memory is bounded however
//! many repositories there are; two repositories on one counter only cost each other a few
//! extra registry requests after a write, never a stale answer.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// How many counters the repositories share.
const STRIPES: usize = 4096;

/// The write generations of every repository.
pub struct Generations {
    stripes: Box<[AtomicU64]>,
}

impl Default for Generations {
    fn default() -> Self {
        Generations {
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Generations {
    fn stripe(&self, repository: &str) -> &AtomicU64 {
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(repository);
        &self.stripes[hash as usize % STRIPES]
    }

    /// The generation answers for `repository` are filed under now.
    pub fn current(&self, repository: &str) -> u64 {
        self.stripe(repository).load(Ordering::Acquire)
    }

    /// Moves `repository` on: everything filed under an earlier generation is unreachable.
    pub fn advance(&self, repository: &str) {
        self.stripe(repository).fetch_add(1, Ordering::AcqRel);
    }

    /// Moves every repository on (the cache was cleared, or may have missed evictions).
    pub fn advance_all(&self) {
        for stripe in self.stripes.iter() {
            stripe.fetch_add(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_moves_its_repository_on() {
        let g = Generations::default();
        let (a, b) = (g.current("a"), g.current("b"));
        g.advance("a");
        assert_ne!(g.current("a"), a);
        // Another repository moves only if it shares the counter.
        let shares = std::ptr::eq(g.stripe("a"), g.stripe("b"));
        assert_eq!(g.current("b") == b, !shares);
        g.advance_all();
        assert_ne!(g.current("b"), b);
    }
}
