//! Exponential backoff between reconnect attempts: one implementation for every reconnecting
//! part (the Redis bridge, the SSI stream, the history writer, `marketcast watch`).
//!
//! Each wait doubles the one before up to a cap, and is spread by a random factor so that many
//! nodes that lost the same peer at the same moment do not all come back on the same tick.
//! A success resets it.

use std::time::Duration;

/// Exponential backoff with jitter, reset on success.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
    /// Each wait is the nominal one times a factor drawn from `low..=high`.
    low: f64,
    high: f64,
}

impl Backoff {
    /// Starts at `first`, doubles up to `max`; each wait is up to half again longer (jitter).
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            next: first,
            low: 1.0,
            high: 1.5,
        }
    }

    /// The same, with each wait drawn from the upper half of the nominal one (`[d/2, d]`):
    /// never longer than the nominal wait.
    pub fn jitter_below(self) -> Self {
        Backoff {
            low: 0.5,
            high: 1.0,
            ..self
        }
    }

    /// The same, without jitter: exactly `first`, `2 first`, ... up to `max`.
    pub fn without_jitter(self) -> Self {
        Backoff {
            low: 1.0,
            high: 1.0,
            ..self
        }
    }

    /// Back to the first wait (after a success).
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// The nominal wait the next call starts from (before jitter).
    pub fn nominal(&self) -> Duration {
        self.next
    }

    /// The next wait, doubling the one after.
    pub fn next_wait(&mut self) -> Duration {
        let factor = self.low + fastrand::f64() * (self.high - self.low);
        let wait = self.next.mul_f64(factor);
        self.next = (self.next * 2).min(self.max);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_its_cap_and_resets() {
        let first = Duration::from_millis(200);
        let max = Duration::from_secs(5);
        let mut b = Backoff::new(first, max);
        let mut nominal = first;
        for _ in 0..10 {
            let wait = b.next_wait();
            assert!(wait >= nominal && wait <= nominal.mul_f64(1.5), "{wait:?}");
            nominal = (nominal * 2).min(max);
        }
        assert_eq!(b.nominal(), max);
        b.reset();
        assert_eq!(b.nominal(), first);
    }

    #[test]
    fn jitter_below_never_exceeds_the_nominal_wait() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8)).jitter_below();
        for nominal in [1, 2, 4, 8, 8] {
            let wait = b.next_wait();
            let nominal = Duration::from_secs(nominal);
            assert!(wait <= nominal && wait >= nominal / 2, "{wait:?}");
        }
    }

    #[test]
    fn without_jitter_is_exact() {
        let mut b =
            Backoff::new(Duration::from_millis(500), Duration::from_secs(30)).without_jitter();
        let waits: Vec<u64> = (0..8).map(|_| b.next_wait().as_millis() as u64).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    }
}
