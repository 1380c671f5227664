//! [`RecentKeys`]: a set that remembers at most a fixed number of keys, forgetting the oldest
//! first. The bot's memory of handled messages, refused users and users already told about a
//! limit must not grow with every stranger who writes.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

/// The most recently inserted keys, at most `capacity` of them.
#[derive(Debug)]
pub(crate) struct RecentKeys<K> {
    capacity: usize,
    order: VecDeque<K>,
    set: HashSet<K>,
}

impl<K: Copy + Eq + Hash> RecentKeys<K> {
    /// An empty set holding at most `capacity` keys (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            set: HashSet::new(),
        }
    }

    /// Records `key`; `false` if it was already there.
    pub(crate) fn insert(&mut self, key: K) -> bool {
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back(key);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    /// Whether `key` is held.
    pub(crate) fn contains(&self, key: &K) -> bool {
        self.set.contains(key)
    }

    /// Forgets `key` (a no-op when absent).
    pub(crate) fn remove(&mut self, key: &K) {
        if self.set.remove(key) {
            self.order.retain(|k| k != key);
        }
    }

    /// Keys held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_keys_are_forgotten_beyond_the_capacity() {
        let mut keys = RecentKeys::new(4);
        assert!(keys.insert(1));
        assert!(!keys.insert(1));
        for i in 2..=5 {
            assert!(keys.insert(i));
        }
        assert_eq!(keys.len(), 4);
        assert!(keys.insert(1), "the oldest key was forgotten");
        keys.remove(&1);
        assert_eq!(keys.len(), 3);
        assert!(keys.insert(1));
    }
}
