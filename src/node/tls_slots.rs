//! TLS handshake slots: how many handshakes may be in progress at once, per client address and
//! in total, and how a connection that finds them taken waits for one.
//!
//! A handshake costs a signature, so the number in progress is bounded (`TLS_MAX_HANDSHAKES`),
//! or a flood of ClientHellos would take the cores the connected clients need. A single bound
//! can be filled by one host, though: a few hundred connections that send a byte of a
//! ClientHello and stop would hold every slot until `WS_HANDSHAKE_TIMEOUT`, and no one else
//! could connect. So each address (by [`crate::base::addr::group`]) has slots of its own too
//! (`TLS_MAX_HANDSHAKES_PER_IP`), and a connection must hold one of its address's before it
//! queues for one of the total: one address can never hold more than its share of the total,
//! nor more than its share of the queue for it. Connections that never send a byte take no slot
//! at all (the accept loop waits for the first byte first, under `TLS_FIRST_BYTE_TIMEOUT`).
//!
//! Both queues are Tokio semaphores, first come first served, and a connection waits at most
//! [`SLOT_WAIT`] in them: a burst of honest clients (a reconnect after a deploy, an office
//! behind one NAT address) is served a little later instead of being dropped, while a
//! connection that cannot get a slot in that time is closed, its client retries. Trusted proxies
//! (a TCP load balancer in front) have no per-address slots: every client comes from them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The longest a connection waits for a handshake slot before it is closed.
pub const SLOT_WAIT: Duration = Duration::from_secs(2);

/// The slots' limits.
#[derive(Debug, Clone, Copy)]
pub struct SlotSettings {
    /// Handshakes in progress at once (at least 1).
    pub max_total: usize,
    /// Handshakes in progress at once from one address; 0: unlimited.
    pub max_per_ip: usize,
}

/// Why a connection got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no TLS handshake slot came free within {SLOT_WAIT:?} (TLS_MAX_HANDSHAKES, TLS_MAX_HANDSHAKES_PER_IP)")]
pub struct NoSlot;

/// The handshake slots. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HandshakeSlots {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    max_per_ip: usize,
    total: Arc<Semaphore>,
    /// Each address with a connection holding or waiting for one of its slots.
    addresses: Mutex<HashMap<IpAddr, Address>>,
}

#[derive(Debug)]
struct Address {
    slots: Arc<Semaphore>,
    /// Connections holding or waiting for one of these slots; the entry goes at zero.
    users: usize,
}

/// A handshake's slot, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    // Dropped in this order: the slots first, then the address's entry, if it was the last.
    _total: OwnedSemaphorePermit,
    _own: Option<OwnedSemaphorePermit>,
    _user: Option<User>,
}

/// A connection's claim on its address's entry (holding or waiting for a slot).
#[derive(Debug)]
struct User {
    inner: Arc<Inner>,
    ip: IpAddr,
}

impl Drop for User {
    fn drop(&mut self) {
        let mut addresses = self.inner.lock();
        if let Some(a) = addresses.get_mut(&self.ip) {
            a.users -= 1;
            if a.users == 0 {
                addresses.remove(&self.ip);
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Address>> {
        self.addresses.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl HandshakeSlots {
    /// Slots with `settings`.
    pub fn new(settings: SlotSettings) -> HandshakeSlots {
        HandshakeSlots {
            inner: Arc::new(Inner {
                max_per_ip: settings.max_per_ip,
                total: Arc::new(Semaphore::new(settings.max_total.max(1))),
                addresses: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Waits up to [`SLOT_WAIT`] for a slot: one of `address`'s, then one of the total.
    /// `address` is the key the connection counts under, `None` for a trusted proxy.
    pub async fn acquire(&self, address: Option<IpAddr>) -> Result<Slot, NoSlot> {
        let own = match address {
            Some(ip) if self.inner.max_per_ip > 0 => Some(self.register(ip)),
            _ => None,
        };
        let wait = async {
            let own_permit = match &own {
                Some((slots, _)) => Some(slots.clone().acquire_owned().await.map_err(|_| NoSlot)?),
                None => None,
            };
            let total = self
                .inner
                .total
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| NoSlot)?;
            Ok::<_, NoSlot>((total, own_permit))
        };
        // A connection that gives up drops its claim (`own`) here too.
        let (total, own_permit) = tokio::time::timeout(SLOT_WAIT, wait)
            .await
            .map_err(|_| NoSlot)??;
        Ok(Slot {
            _total: total,
            _own: own_permit,
            _user: own.map(|(_, user)| user),
        })
    }

    /// `ip`'s slots, and a claim on them that keeps its entry while the connection waits or
    /// holds a slot.
    fn register(&self, ip: IpAddr) -> (Arc<Semaphore>, User) {
        let mut addresses = self.inner.lock();
        let a = addresses.entry(ip).or_insert_with(|| Address {
            slots: Arc::new(Semaphore::new(self.inner.max_per_ip)),
            users: 0,
        });
        a.users += 1;
        let slots = a.slots.clone();
        drop(addresses);
        (
            slots,
            User {
                inner: self.inner.clone(),
                ip,
            },
        )
    }

    /// Addresses with a connection holding or waiting for a slot (for tests).
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.inner.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn slots(total: usize, per_ip: usize) -> HandshakeSlots {
        HandshakeSlots::new(SlotSettings {
            max_total: total,
            max_per_ip: per_ip,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn one_address_cannot_take_every_slot() {
        let s = slots(4, 2);
        let hog = (
            s.acquire(ip("10.0.0.2")).await.unwrap(),
            s.acquire(ip("10.0.0.2")).await.unwrap(),
        );
        // Its third waits for one of its own slots, and gives up after SLOT_WAIT.
        let started = tokio::time::Instant::now();
        assert_eq!(s.acquire(ip("10.0.0.2")).await.unwrap_err(), NoSlot);
        assert_eq!(started.elapsed(), SLOT_WAIT);
        // Others still get the rest at once.
        let _others = (
            s.acquire(ip("10.0.0.3")).await.unwrap(),
            s.acquire(ip("10.0.0.4")).await.unwrap(),
        );
        drop(hog);
        assert_eq!(s.addresses(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_house_is_waited_for_not_refused() {
        let s = slots(2, 0);
        let first = s.acquire(ip("10.0.0.1")).await.unwrap();
        let _second = s.acquire(ip("10.0.0.2")).await.unwrap();
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.acquire(ip("10.0.0.3")).await.map(|_| ()) })
        };
        tokio::time::sleep(SLOT_WAIT / 2).await;
        drop(first);
        assert_eq!(
            waiter.await.unwrap(),
            Ok(()),
            "a slot freed in time is taken"
        );
        let _third = s.acquire(ip("10.0.0.3")).await.unwrap();
        assert_eq!(s.acquire(ip("10.0.0.4")).await.unwrap_err(), NoSlot);
    }

    #[tokio::test(start_paused = true)]
    async fn trusted_proxies_have_no_slots_of_their_own_and_entries_go_when_unused() {
        let s = slots(3, 1);
        let proxy = (
            s.acquire(None).await.unwrap(),
            s.acquire(None).await.unwrap(),
        );
        let one = s.acquire(ip("2001:db8::")).await.unwrap();
        assert_eq!(s.addresses(), 1);
        // Waiting for its address's slot, and giving up, leaves no entry behind.
        assert!(s.acquire(ip("2001:db8::")).await.is_err());
        drop(one);
        drop(proxy);
        assert_eq!(s.addresses(), 0);
        let _again = s.acquire(ip("2001:db8::")).await.unwrap();
    }
}
