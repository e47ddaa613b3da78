//! Which kept messages a session has delivered lately. A message sent with
//! `persist` is kept before it is sent, and reaches a session twice when
//! the session reads the store (on SUBSCRIBE) while the live copy is on its
//! way: the second is dropped.

use std::collections::{HashSet, VecDeque};

/// Kept-message ids a session remembers, at most.
const REMEMBERED: usize = 1024;

#[derive(Debug, Default)]
pub struct RecentlyKept {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl RecentlyKept {
    /// True the first time `id` is seen (and remembers it); false after.
    pub fn first_time(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() >= REMEMBERED
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        self.ids.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }

    /// Forgets `id`, so that it is delivered again (a NACKed message that
    /// comes back).
    pub fn forget(&mut self, id: &str) {
        if self.ids.remove(id) {
            self.order.retain(|kept| kept != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_new_once_until_forgotten_or_pushed_out() {
        let mut recent = RecentlyKept::default();
        assert!(recent.first_time("a"));
        assert!(!recent.first_time("a"));
        recent.forget("a");
        assert!(recent.first_time("a"));
        for n in 0..REMEMBERED {
            assert!(recent.first_time(&n.to_string()));
        }
        assert!(recent.first_time("a"), "the oldest was pushed out");
    }
}
