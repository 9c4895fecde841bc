//! Who may hold the node's connection slots: the handshakes in progress (the oldest evicted
//! beyond a bound, so that connections trickling bytes cannot hold slots while well-behaved
//! clients wait) and, when configured, the connections of each peer address. No IO here.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// A handshake whose client has sent its hello is evicted by a newcomer only after this long:
/// a well-behaved client finishes in milliseconds, so such a handshake is stalled.
pub const HANDSHAKE_GRACE: Duration = Duration::from_secs(1);

/// The connections in their TLS handshake, oldest first. A connection that has not yet sent its
/// whole ClientHello costs nothing but its slot, and is what a trickle of bytes holds: it is
/// evicted first. One whose hello came is a client the node is doing cryptography for; it is
/// evicted only when it has stalled past [`HANDSHAKE_GRACE`]. When nothing can be evicted the
/// newcomer is turned away at once, so a flood of real clients gets handshakes finished at the
/// node's pace instead of each evicting another before it completes.
#[derive(Default)]
pub struct Handshakes {
    pending: Mutex<VecDeque<Pending>>,
    next: AtomicU64,
}

struct Pending {
    id: u64,
    started: Instant,
    hello: bool,
    evict: oneshot::Sender<()>,
}

impl Handshakes {
    /// Registers a handshake starting `now`, within `max` at once; the receiver fires if it is
    /// evicted. `None`: there are `max` handshakes and none can be evicted.
    pub fn begin(&self, max: usize, now: Instant) -> Option<(u64, oneshot::Receiver<()>)> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        while pending.len() >= max.max(1) {
            let evictable = pending
                .iter()
                .position(|p| !p.hello)
                .or_else(|| pending.front().filter(|p| now.saturating_duration_since(p.started) >= HANDSHAKE_GRACE).map(|_| 0));
            let i = evictable?;
            if let Some(p) = pending.remove(i) {
                let _ = p.evict.send(());
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (evict, rx) = oneshot::channel();
        pending.push_back(Pending { id, started: now, hello: false, evict });
        Some((id, rx))
    }

    /// The client of handshake `id` sent its whole ClientHello.
    pub fn hello(&self, id: u64) {
        if let Some(p) = self.pending.lock().unwrap_or_else(|p| p.into_inner()).iter_mut().find(|p| p.id == id) {
            p.hello = true;
        }
    }

    /// The handshake `id` finished (or failed): it can no longer be evicted.
    pub fn end(&self, id: u64) {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).retain(|p| p.id != id);
    }
}

/// Open connections per peer address, each at most `max` (0: no cap).
pub struct AddressSlots {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One connection's slot; freed when dropped.
pub struct AddressSlot {
    addr: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl AddressSlots {
    pub fn new(max: usize) -> AddressSlots {
        AddressSlots { max, open: Arc::default() }
    }

    /// A slot for a new connection from `addr`, or `None` when that address holds `max` already.
    pub fn take(&self, addr: IpAddr) -> Option<AddressSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(addr).or_default();
        if self.max > 0 && *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AddressSlot { addr, open: self.open.clone() })
    }

    /// How many connections `addr` holds.
    #[cfg(test)]
    fn held(&self, addr: IpAddr) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).get(&addr).copied().unwrap_or(0)
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));

    #[test]
    fn connections_without_a_hello_are_evicted_oldest_first() {
        let (h, t0) = (Handshakes::default(), Instant::now());
        let (first, mut first_rx) = h.begin(2, t0).expect("room");
        let (_, mut second_rx) = h.begin(2, t0).expect("room");
        assert!(first_rx.try_recv().is_err(), "two fit");
        let (_, mut third_rx) = h.begin(2, t0).expect("the oldest makes room");
        assert!(first_rx.try_recv().is_ok(), "the oldest goes");
        assert!(second_rx.try_recv().is_err() && third_rx.try_recv().is_err());
        // A finished handshake no longer counts.
        h.end(first);
        let (done, mut done_rx) = h.begin(2, t0).expect("room");
        assert!(second_rx.try_recv().is_ok());
        h.end(done);
        assert!(h.begin(2, t0).is_some(), "room after one ended");
        assert!(third_rx.try_recv().is_err() && done_rx.try_recv().is_err());
    }

    #[test]
    fn a_client_that_sent_its_hello_is_evicted_only_once_stalled() {
        let (h, t0) = (Handshakes::default(), Instant::now());
        let (a, mut a_rx) = h.begin(2, t0).expect("room");
        let (b, mut b_rx) = h.begin(2, t0).expect("room");
        h.hello(a);
        // The newer connection without a hello goes first, although it is younger.
        let (c, mut c_rx) = h.begin(2, t0).expect("b makes room");
        assert!(b_rx.try_recv().is_ok() && a_rx.try_recv().is_err());
        h.end(b);
        h.hello(c);
        // Both are in their cryptography, neither stalled: the newcomer is turned away.
        assert!(h.begin(2, t0 + HANDSHAKE_GRACE / 2).is_none());
        assert!(a_rx.try_recv().is_err() && c_rx.try_recv().is_err());
        // Past the grace the oldest is evicted.
        let (_, _) = h.begin(2, t0 + HANDSHAKE_GRACE).expect("a stalled");
        assert!(a_rx.try_recv().is_ok() && c_rx.try_recv().is_err());
    }

    #[test]
    fn each_address_holds_at_most_its_slots_and_gets_them_back() {
        let slots = AddressSlots::new(2);
        let a1 = slots.take(A).expect("first");
        let a2 = slots.take(A).expect("second");
        assert!(slots.take(A).is_none(), "a third from the same address");
        let b = slots.take(B).expect("another address is not affected");
        assert_eq!((slots.held(A), slots.held(B)), (2, 1));
        drop(a1);
        let a3 = slots.take(A).expect("a freed slot is taken again");
        drop((a2, a3, b));
        assert_eq!((slots.held(A), slots.held(B)), (0, 0));
        assert!(slots.open.lock().expect("lock").is_empty(), "no entry is kept for an address without connections");
    }

    #[test]
    fn no_cap_when_the_bound_is_zero() {
        let slots = AddressSlots::new(0);
        let held: Vec<_> = (0..1000).map(|_| slots.take(A).expect("slot")).collect();
        assert_eq!(slots.held(A), 1000);
        drop(held);
        assert_eq!(slots.held(A), 0);
    }
}
