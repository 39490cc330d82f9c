//! A bounded map whose entries expire at the TTL of the DNS answer they came
//! from. mail-auth keeps its parsed records (SPF, DKIM keys, DMARC, address
//! sets) in caches of this kind through its `ResolverCache` trait, so a warm
//! cache costs neither a query nor a parse.
//!
//! Bounded: at `capacity` entries, expired ones are dropped first, then an
//! arbitrary tenth of the rest (a full cache must never grow or stall).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

pub(crate) struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    capacity: usize,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    pub(crate) fn new(capacity: usize) -> TtlCache<K, V> {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The value, when present and not expired.
    pub(crate) fn lookup<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some((v, until)) if *until > Instant::now() => Some(v.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn store(&self, key: K, value: V, until: Instant) {
        if self.capacity == 0 || until <= Instant::now() {
            return;
        }
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.capacity && !map.contains_key(&key) {
            let now = Instant::now();
            map.retain(|_, (_, t)| *t > now);
            if map.len() >= self.capacity {
                // HashMap order is arbitrary: the first tenth it yields goes.
                let drop = (self.capacity / 10).max(1);
                let mut seen = 0;
                map.retain(|_, _| {
                    seen += 1;
                    seen > drop
                });
            }
        }
        map.insert(key, (value, until));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl<K: Hash + Eq, V: Clone> mail_auth::ResolverCache<K, V> for TtlCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lookup(name)
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(name).map(|(v, _)| v)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        self.store(key, value, valid_until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn entries_expire_and_the_size_stays_bounded() {
        let c: TtlCache<String, u32> = TtlCache::new(20);
        let later = Instant::now() + Duration::from_secs(60);
        c.store("a".into(), 1, later);
        assert_eq!(c.lookup("a"), Some(1));
        c.store("old".into(), 2, Instant::now() - Duration::from_secs(1));
        assert_eq!(c.lookup("old"), None, "an answer past its TTL is never stored");
        for i in 0..100 {
            c.store(format!("k{i}"), i, later);
        }
        assert!(c.len() <= 20, "{} entries", c.len());
        assert_eq!(c.lookup("k99"), Some(99), "the newest entry is kept");
    }
}
