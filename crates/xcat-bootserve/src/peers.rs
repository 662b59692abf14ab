//! Per-peer admission: how many connections one address may hold at once,
//! and how fast it may send requests (a token bucket), so that one peer —
//! a slow-drip client, a flood of denied requests — cannot take the
//! connection pool or the policy checks from everyone else.
//!
//! A peer is an IP address (IPv4-mapped IPv6 addresses count as IPv4).
//! The table keeps a peer while it holds a connection or its bucket is
//! still refilling; idle peers are swept out as the table grows, so its
//! size follows the peers seen in the last few seconds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Repeated refusals of one kind are logged at most this often.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// How often to say something that may happen thousands of times a second:
/// the first time, then at most once per [`LOG_EVERY`] with the count of
/// what went unsaid in between.
#[derive(Debug, Default)]
pub struct LogEvery {
    last: Option<Instant>,
    unsaid: u64,
}

impl LogEvery {
    /// Some(unsaid since the last line) when a line is due now.
    pub fn due(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.duration_since(t) < LOG_EVERY => {
                self.unsaid += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.unsaid))
            }
        }
    }
}

/// The per-peer limits, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct PeerLimits {
    pub max_connections: usize,
    /// Requests per second a peer may sustain; 0 = no rate guard.
    pub rate: u32,
    /// Requests a peer may send at once after being idle.
    pub burst: u32,
}

/// Every peer's connections and request bucket.
pub struct Peers {
    limits: PeerLimits,
    table: Mutex<Table>,
}

struct Table {
    by_ip: HashMap<IpAddr, Peer>,
    /// Sweep idle peers out when the table reaches this size.
    sweep_at: usize,
}

/// Smallest table size that triggers a sweep.
const SWEEP_MIN: usize = 1024;

struct Peer {
    connections: usize,
    tokens: f64,
    refilled: Instant,
    refusals: LogEvery,
}

/// A connection refused because its peer holds its share of the pool.
pub struct Refused {
    pub held: usize,
    /// Some(refusals not logged since the last line) when this one is to be logged.
    pub log: Option<u64>,
}

/// One connection's hold on its peer's share; released when dropped.
pub struct PeerSlot {
    peers: Arc<Peers>,
    ip: IpAddr,
}

impl Peers {
    pub fn new(limits: PeerLimits) -> Arc<Peers> {
        Arc::new(Peers {
            limits,
            table: Mutex::new(Table {
                by_ip: HashMap::new(),
                sweep_at: SWEEP_MIN,
            }),
        })
    }

    pub fn limits(&self) -> PeerLimits {
        self.limits
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take one of `ip`'s connection slots, or say why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<PeerSlot, Refused> {
        let ip = ip.to_canonical();
        let now = Instant::now();
        let mut t = self.table();
        if t.by_ip.len() >= t.sweep_at {
            t.by_ip
                .retain(|_, p| p.connections > 0 || !self.refill(p, now));
            t.sweep_at = SWEEP_MIN.max(2 * t.by_ip.len());
        }
        let burst = f64::from(self.limits.burst);
        let peer = t.by_ip.entry(ip).or_insert_with(|| Peer {
            connections: 0,
            tokens: burst,
            refilled: now,
            refusals: LogEvery::default(),
        });
        if peer.connections >= self.limits.max_connections {
            return Err(Refused {
                held: peer.connections,
                log: peer.refusals.due(now),
            });
        }
        peer.connections += 1;
        Ok(PeerSlot {
            peers: self.clone(),
            ip,
        })
    }

    /// Refill `p`'s bucket up to `now`; true when it is full.
    fn refill(&self, p: &mut Peer, now: Instant) -> bool {
        let burst = f64::from(self.limits.burst);
        let earned = now.duration_since(p.refilled).as_secs_f64() * f64::from(self.limits.rate);
        p.tokens = (p.tokens + earned).min(burst);
        p.refilled = now;
        p.tokens >= burst
    }
}

impl PeerSlot {
    /// The peer's address (canonical).
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// May this peer send a request now? Takes one from its bucket.
    pub fn take_request(&self) -> bool {
        if self.peers.limits.rate == 0 {
            return true;
        }
        let now = Instant::now();
        let mut t = self.peers.table();
        let Some(p) = t.by_ip.get_mut(&self.ip) else {
            return true;
        };
        self.peers.refill(p, now);
        if p.tokens >= 1.0 {
            p.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut t = self.peers.table();
        if let Some(p) = t.by_ip.get_mut(&self.ip) {
            p.connections = p.connections.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(max: usize, rate: u32, burst: u32) -> Arc<Peers> {
        Peers::new(PeerLimits {
            max_connections: max,
            rate,
            burst,
        })
    }

    #[test]
    fn a_peer_holds_at_most_its_share_and_gets_it_back() {
        let p = peers(2, 0, 0);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        let s1 = p.admit(a).ok().unwrap();
        let _s2 = p.admit(a).ok().unwrap();
        let refused = p.admit(a).err().expect("third refused");
        assert_eq!((refused.held, refused.log), (2, Some(0)));
        assert_eq!(
            p.admit(a).err().unwrap().log,
            None,
            "logged once per period"
        );
        let other = p.admit(b).ok().expect("another peer is not affected");
        assert_eq!(other.ip(), "10.0.0.2".parse::<IpAddr>().unwrap());
        drop(s1);
        assert!(p.admit(a).is_ok());
    }

    #[test]
    fn the_request_rate_is_a_token_bucket() {
        let p = peers(10, 1, 3);
        let s = p.admit("10.0.0.1".parse().unwrap()).ok().unwrap();
        assert!((0..3).all(|_| s.take_request()), "the burst");
        assert!(!s.take_request(), "then one a second");
        let unguarded = peers(10, 0, 0);
        let s = unguarded.admit("10.0.0.1".parse().unwrap()).ok().unwrap();
        assert!((0..10_000).all(|_| s.take_request()));
    }

    #[test]
    fn idle_peers_are_swept_as_the_table_grows() {
        let p = peers(1, 1000, 1);
        for i in 0..5000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            drop(p.admit(ip).ok().unwrap());
        }
        assert!(
            p.table().by_ip.len() <= 2 * SWEEP_MIN,
            "{}",
            p.table().by_ip.len()
        );
    }

    #[test]
    fn log_every_counts_what_it_does_not_say() {
        let mut l = LogEvery::default();
        let t = Instant::now();
        assert_eq!(l.due(t), Some(0));
        assert_eq!(l.due(t + Duration::from_secs(1)), None);
        assert_eq!(l.due(t + Duration::from_secs(2)), None);
        assert_eq!(l.due(t + LOG_EVERY + Duration::from_secs(1)), Some(2));
    }
}
