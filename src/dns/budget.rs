//! One message's share of the resolver: every lookup that misses the caches
//! counts against `[dns] message_lookups`, and all of them together must end
//! by the message's deadline (`[dns] message_timeout`).
//!
//! mail-auth asks its caches before each query, so a cache miss is a lookup
//! about to happen. Past the budget a TXT question (SPF, DKIM key, DMARC)
//! is answered from here with a resolver error, which mail-auth reports as
//! `temperror`; address and MX questions cannot be refused through mail-auth's
//! cache interface, so they are counted, bounded by RFC 7208's own limits (10
//! mechanisms, 10 MX names) and cut off by the deadline. DNSBL queries are
//! ours and are refused outright past the budget.

use std::borrow::Borrow;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use mail_auth::{MX, Parameters, RecordSet, ResolverCache, Txt};

use crate::dns::cache::TtlCache;
use crate::dns::resolver::{Dns, DnsError};

/// The per-message view of the resolver.
pub(crate) struct Lookups<'a> {
    pub(crate) dns: &'a Dns,
    used: AtomicU32,
    limit: u32,
    deadline: Instant,
}

/// A cache of the shared resolver, counting misses against a message's budget.
pub(crate) struct Budgeted<'a, K, V> {
    cache: &'a TtlCache<K, V>,
    used: &'a AtomicU32,
    limit: u32,
    refusal: fn() -> Option<V>,
}

fn refuse_txt() -> Option<Txt> {
    Some(Txt::Error(mail_auth::Error::Dns(mail_auth::DnsError::Resolver(
        "the message's DNS lookup budget ([dns] message_lookups) is used up".into(),
    ))))
}

fn cannot_refuse<V>() -> Option<V> {
    None
}

impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for Budgeted<'_, K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(v) = self.cache.lookup(name) {
            return Some(v);
        }
        if self.used.fetch_add(1, Ordering::Relaxed) >= self.limit {
            return (self.refusal)();
        }
        None
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        ResolverCache::remove(self.cache, name)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        self.cache.store(key, value, valid_until);
    }
}

/// The caches mail-auth is given for one message.
pub(crate) type AuthParameters<'x, P> = Parameters<
    'x,
    P,
    Budgeted<'x, Box<str>, Txt>,
    Budgeted<'x, Box<str>, RecordSet<MX>>,
    Budgeted<'x, Box<str>, RecordSet<Ipv4Addr>>,
    Budgeted<'x, Box<str>, RecordSet<Ipv6Addr>>,
    Budgeted<'x, IpAddr, RecordSet<Box<str>>>,
>;

/// The five budgeted caches of one message.
pub(crate) struct MessageCaches<'a> {
    txt: Budgeted<'a, Box<str>, Txt>,
    mx: Budgeted<'a, Box<str>, RecordSet<MX>>,
    v4: Budgeted<'a, Box<str>, RecordSet<Ipv4Addr>>,
    v6: Budgeted<'a, Box<str>, RecordSet<Ipv6Addr>>,
    ptr: Budgeted<'a, IpAddr, RecordSet<Box<str>>>,
}

impl MessageCaches<'_> {
    /// mail-auth's parameters for `params`, with these caches.
    pub(crate) fn params<'x, P>(&'x self, params: P) -> AuthParameters<'x, P> {
        Parameters {
            params,
            cache_txt: Some(&self.txt),
            cache_mx: Some(&self.mx),
            cache_ptr: Some(&self.ptr),
            cache_ipv4: Some(&self.v4),
            cache_ipv6: Some(&self.v6),
        }
    }
}

impl<'a> Lookups<'a> {
    pub(crate) fn new(dns: &'a Dns) -> Lookups<'a> {
        Lookups {
            dns,
            used: AtomicU32::new(0),
            limit: dns.settings.message_lookups,
            deadline: Instant::now() + dns.settings.message_timeout,
        }
    }

    /// The budgeted caches mail-auth reads through.
    pub(crate) fn caches(&self) -> MessageCaches<'_> {
        let c = &self.dns.caches;
        MessageCaches {
            txt: self.budgeted(&c.txt, refuse_txt),
            mx: self.budgeted(&c.mx, cannot_refuse),
            v4: self.budgeted(&c.v4, cannot_refuse),
            v6: self.budgeted(&c.v6, cannot_refuse),
            ptr: self.budgeted(&c.ptr, cannot_refuse),
        }
    }

    fn budgeted<'x, K, V>(&'x self, cache: &'x TtlCache<K, V>, refusal: fn() -> Option<V>) -> Budgeted<'x, K, V> {
        Budgeted {
            cache,
            used: &self.used,
            limit: self.limit,
            refusal,
        }
    }

    /// Lookups that missed the caches so far (answered or refused).
    pub(crate) fn used(&self) -> u32 {
        self.used.load(Ordering::Relaxed)
    }

    /// When every lookup of this message must have ended.
    pub(crate) fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.deadline)
    }

    /// Counts one question; past the budget, the error to answer with.
    fn spend(&self, name: &str) -> Result<(), DnsError> {
        if self.used.fetch_add(1, Ordering::Relaxed) >= self.limit {
            return Err(DnsError::Temporary {
                name: name.to_string(),
                detail: "the message's DNS lookup budget ([dns] message_lookups) is used up".into(),
            });
        }
        Ok(())
    }

    fn out_of_time(name: &str) -> DnsError {
        DnsError::Temporary {
            name: name.to_string(),
            detail: "the message's DNS time ([dns] message_timeout) ran out".into(),
        }
    }

    /// TXT records of `name` (see [`Dns::txt`]), within budget and deadline.
    pub(crate) async fn txt(&self, name: &str) -> Result<Option<Vec<Vec<u8>>>, DnsError> {
        self.spend(name)?;
        tokio::time::timeout_at(self.deadline(), self.dns.txt(name))
            .await
            .unwrap_or_else(|_| Err(Self::out_of_time(name)))
    }

    /// A records of `name` for a DNSBL query: `Ok(None)` when the name does
    /// not exist (not listed). Counted against the budget; past it, or past
    /// the deadline, a temporary error.
    pub(crate) async fn dnsbl(&self, name: &str) -> Result<Option<Vec<Ipv4Addr>>, DnsError> {
        self.spend(name)?;
        tokio::time::timeout_at(self.deadline(), self.dns.ipv4(name))
            .await
            .unwrap_or_else(|_| Err(Self::out_of_time(name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::sender::DnsConfig;

    #[tokio::test]
    async fn past_the_budget_every_question_is_refused_without_asking() {
        let dns = Dns::new(&DnsConfig {
            // A closed loopback port and short timeouts: the questions that
            // are asked fail quickly (a UDP question waits for its timeout).
            servers: vec!["127.0.0.1:9".parse().unwrap()],
            timeout: std::time::Duration::from_millis(20),
            attempts: 1,
            message_timeout: std::time::Duration::from_millis(500),
            message_lookups: 2,
            ..DnsConfig::default()
        })
        .unwrap();
        let lookups = Lookups::new(&dns);
        for name in ["a.test", "b.test"] {
            let e = lookups.dnsbl(name).await.unwrap_err().to_string();
            assert!(!e.contains("budget"), "{e}");
        }
        let e = lookups.txt("c.test").await.unwrap_err().to_string();
        assert!(e.contains("lookup budget"), "{e}");
        assert_eq!(lookups.used(), 3);
        // mail-auth's TXT questions are refused through the cache the same way.
        let caches = lookups.caches();
        let refused = ResolverCache::get(&caches.txt, "d.test.");
        assert!(matches!(refused, Some(Txt::Error(_))));
    }
}
