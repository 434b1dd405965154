//! The live counts of one server, client connections open and requests in flight, each taken
//! and given back by a guard, so that every server in a process counts its own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct Counters {
    open: AtomicUsize,
    in_flight: AtomicUsize,
}

impl Counters {
    /// Client connections open now, over every proxy worker of the server.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Requests being handled now (drained before exit on SIGTERM).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A place for a client connection just accepted, unless `max` are taken.
    pub fn connect(self: &Arc<Self>, max: usize) -> Option<Connection> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| Connection(self.clone()))
    }

    /// Counts one request in flight until the guard is dropped.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// One client connection's place under the limit, given back when the connection ends, however
/// it ends.
#[must_use = "the place is given back when this is dropped"]
pub struct Connection(Arc<Counters>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One request in flight, counted until it is dropped with the request's context.
#[must_use = "the request stops counting when this is dropped"]
pub struct InFlight(Arc<Counters>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_stop_at_the_limit_and_come_back_when_dropped() {
        let counters = Arc::new(Counters::default());
        let a = counters.connect(2).expect("first slot");
        let b = counters.connect(2).expect("second slot");
        assert!(counters.connect(2).is_none(), "a third slot past the limit");
        assert_eq!(counters.open(), 2);
        drop(a);
        let c = counters.connect(2).expect("a slot freed by a closed connection");
        drop((b, c));
        assert_eq!(counters.open(), 0);
    }

    #[test]
    fn requests_count_until_their_guard_is_dropped() {
        let counters = Arc::new(Counters::default());
        let first = counters.request();
        let second = counters.request();
        assert_eq!(counters.in_flight(), 2);
        drop(first);
        assert_eq!(counters.in_flight(), 1);
        drop(second);
        assert_eq!(counters.in_flight(), 0);
    }

    #[test]
    fn two_servers_in_one_process_count_apart() {
        let one = Arc::new(Counters::default());
        let other = Arc::new(Counters::default());
        let held: Vec<Connection> = (0..3).map(|_| one.connect(3).expect("a slot")).collect();
        assert!(one.connect(3).is_none(), "the first server is full");
        let _theirs = other.connect(3).expect("the other server's limit is its own");
        let _request = one.request();
        assert_eq!((one.open(), one.in_flight()), (3, 1));
        assert_eq!((other.open(), other.in_flight()), (1, 0));
        drop(held);
        assert_eq!(one.open(), 0);
    }
}
