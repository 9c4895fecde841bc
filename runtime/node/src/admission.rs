//! Who may hold the node's connection slots: the handshakes in progress (the oldest evicted
//! beyond a bound, so that connections trickling bytes cannot hold slots while well-behaved
//! clients wait) and, when configured, the connections of each peer address. No IO here.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The connections in their TLS handshake, oldest first, each with what evicts it.
#[derive(Default)]
pub struct Handshakes {
    pending: Mutex<VecDeque<(u64, oneshot::Sender<()>)>>,
    next: AtomicU64,
}

impl Handshakes {
    /// Registers a new handshake; evicts the oldest beyond `max`. The receiver fires on eviction.
    pub fn begin(&self, max: usize) -> (u64, oneshot::Receiver<()>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.push_back((id, tx));
        while pending.len() > max {
            if let Some((_, evict)) = pending.pop_front() {
                let _ = evict.send(());
            }
        }
        (id, rx)
    }

    /// The handshake `id` finished (or failed): it can no longer be evicted.
    pub fn end(&self, id: u64) {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).retain(|(p, _)| *p != id);
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
    fn the_oldest_handshakes_are_evicted_beyond_the_bound() {
        let h = Handshakes::default();
        let (first, mut first_rx) = h.begin(2);
        let (_, mut second_rx) = h.begin(2);
        assert!(first_rx.try_recv().is_err(), "two fit");
        let (_, mut third_rx) = h.begin(2);
        assert!(first_rx.try_recv().is_ok(), "the oldest goes");
        assert!(second_rx.try_recv().is_err() && third_rx.try_recv().is_err());
        // A finished handshake no longer counts, and is never evicted.
        let (done, mut done_rx) = h.begin(2);
        assert!(second_rx.try_recv().is_ok());
        h.end(done);
        h.end(first);
        let (_, _) = h.begin(2);
        assert!(third_rx.try_recv().is_err(), "room for two after one ended");
        assert!(done_rx.try_recv().is_err());
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
