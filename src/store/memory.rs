//! The store of one replica: revoked token ids and used assertion ids in its own memory.
//!
//! Each table has a hard bound. A live revocation is never dropped to make room: past the
//! bound (or its owner's quota) a new one is refused.

use super::{Refused, Store, Use};
use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// A revocation was refused: the owner's quota or the table is full of live revocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Bound of each in-memory table.
pub const MAX_ENTRIES: usize = 100_000;
/// Live revocations one client may hold: a tenth of the table, so no client can fill it.
pub const MAX_PER_OWNER: usize = MAX_ENTRIES / 10;

#[derive(Default)]
pub struct MemoryStore {
    revoked: Mutex<Revoked>,
    used: Mutex<HashMap<Box<str>, u64>>,
}

/// Revoked ids with their owners, and how many each owner holds.
#[derive(Default)]
struct Revoked {
    ids: HashMap<Box<str>, (u64, Arc<str>)>,
    per_owner: HashMap<Arc<str>, usize>,
    /// When expired entries were last dropped: at most once a second, since expiry is in seconds.
    purged_at: u64,
}

impl Revoked {
    fn purge(&mut self, now: u64) {
        if self.purged_at == now {
            return;
        }
        self.purged_at = now;
        let per_owner = &mut self.per_owner;
        self.ids.retain(|_, (exp, owner)| {
            let live = *exp >= now;
            if !live {
                if let Some(n) = per_owner.get_mut(owner) {
                    *n -= 1;
                }
            }
            live
        });
        per_owner.retain(|_, n| *n > 0);
    }

    fn room(&self, owner: &str, new: usize) -> bool {
        let held = self.per_owner.get(owner).copied().unwrap_or(0);
        held + new <= MAX_PER_OWNER && self.ids.len() + new <= MAX_ENTRIES
    }
}

fn purge(map: &mut HashMap<Box<str>, u64>, now: u64) {
    map.retain(|_, exp| *exp >= now);
}

impl MemoryStore {
    /// [`Store::revoke`], at once.
    pub fn revoke_now(&self, owner: &str, ids: &[&str], exp: u64, now: u64) -> Result<(), Full> {
        let mut r = self.revoked.lock();
        for id in ids {
            // Already revoked: kept until the later of the two expiries, whoever revoked it.
            if let Some((e, _)) = r.ids.get_mut(*id) {
                *e = (*e).max(exp);
            }
        }
        let new: Vec<&str> = ids.iter().copied().filter(|id| !r.ids.contains_key(*id)).collect();
        if !r.room(owner, new.len()) {
            r.purge(now);
            if !r.room(owner, new.len()) {
                return Err(Full);
            }
        }
        let owner: Arc<str> = match r.per_owner.get_key_value(owner) {
            Some((k, _)) => k.clone(),
            None => owner.into(),
        };
        *r.per_owner.entry(owner.clone()).or_insert(0) += new.len();
        for id in new {
            r.ids.insert(id.into(), (exp, owner.clone()));
        }
        Ok(())
    }

    /// [`Store::use_once`], at once.
    pub fn use_once_now(&self, id: &str, exp: u64, now: u64) -> Use {
        let mut m = self.used.lock();
        if let Some(e) = m.get(id) {
            if *e >= now {
                return Use::Replay;
            }
        }
        if m.len() >= MAX_ENTRIES {
            purge(&mut m, now);
            if m.len() >= MAX_ENTRIES {
                return Use::Full;
            }
        }
        m.insert(id.into(), exp);
        Use::First
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn revoke(&self, owner: &str, ids: &[&str], exp: u64, now: u64) -> Result<(), Refused> {
        self.revoke_now(owner, ids, exp, now).map_err(|Full| Refused::Full)
    }

    fn is_revoked(&self, jti: &str) -> bool {
        let r = self.revoked.lock();
        !r.ids.is_empty() && r.ids.contains_key(jti)
    }

    async fn use_once(&self, id: &str, exp: u64, now: u64) -> Use {
        self.use_once_now(id, exp, now)
    }

    fn sizes(&self) -> (usize, usize) {
        (self.revoked.lock().ids.len(), self.used.lock().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_once_refuses_replay_until_expiry() {
        let s = MemoryStore::default();
        assert_eq!(s.use_once_now("a", 100, 50), Use::First);
        assert_eq!(s.use_once_now("a", 100, 60), Use::Replay);
        assert_eq!(
            s.use_once_now("a", 200, 101),
            Use::First,
            "expired entries may be reused"
        );
    }

    #[test]
    fn revocations_are_forgotten_after_expiry_when_space_is_needed() {
        let s = MemoryStore::default();
        s.revoke_now("demo\0a", &["x"], 10, 0).unwrap();
        assert!(s.is_revoked("x"));
        assert!(!s.is_revoked("y"));
        for i in 0..MAX_PER_OWNER - 1 {
            s.revoke_now("demo\0a", &[&format!("f{i}")], 5, 0).unwrap();
        }
        assert_eq!(
            s.revoke_now("demo\0a", &["z"], 100, 1),
            Err(Full),
            "the quota is full of live entries"
        );
        s.revoke_now("demo\0a", &["z"], 100, 20).unwrap();
        assert!(s.is_revoked("z"));
        assert!(!s.is_revoked("x"), "expired entries purged");
        assert_eq!(s.sizes().0, 1);
    }

    #[test]
    fn one_client_cannot_evict_another_clients_live_revocations() {
        let s = MemoryStore::default();
        s.revoke_now("demo\0victim", &["victim-token", "victim-chain"], 1_000, 0)
            .unwrap();
        let mut refused = 0;
        for i in 0..MAX_PER_OWNER + 50 {
            if s.revoke_now("demo\0attacker", &[&format!("junk-{i}")], 1_000, 0)
                .is_err()
            {
                refused += 1;
            }
        }
        assert_eq!(refused, 50, "past its quota the attacker is refused");
        assert!(s.is_revoked("victim-token") && s.is_revoked("victim-chain"));
        // Other clients still have room, up to the table's bound; then they are refused too,
        // and nothing live is dropped.
        let mut owner = 0;
        let mut stored = s.sizes().0;
        while s
            .revoke_now(&format!("demo\0c{}", owner / 1000), &[&format!("t{owner}")], 1_000, 0)
            .is_ok()
        {
            owner += 1;
            stored += 1;
        }
        assert_eq!(stored, MAX_ENTRIES);
        assert!(s.is_revoked("victim-token") && s.is_revoked("junk-0"));
        // Revoking again what is already revoked needs no room.
        assert_eq!(s.revoke_now("demo\0victim", &["victim-token"], 2_000, 0), Ok(()));
    }
}
