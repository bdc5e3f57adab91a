//! The fakes' notion of "now".
//!
//! A fake answers with the timestamps Google would (operation times, metric points, token
//! lifetimes), so it needs the time of the test driving it. That test also runs cutover on a
//! manual clock; both read the same `Arc<Mutex<Timestamp>>` (cutover's `Clock::Manual` holds
//! one), so moving one moves the other and a five-minute soak takes milliseconds.

use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};

/// The time a fake reads: the machine's, or a manual one shared with whoever moves it.
#[derive(Clone, Debug)]
pub enum FakeClock {
    /// The machine's clock (the bench and probes run cutover on real time).
    System,
    /// A time that moves only when told to; clones share it.
    Manual(Arc<Mutex<Timestamp>>),
}

impl FakeClock {
    /// A manual clock starting at `start`.
    pub fn manual(start: Timestamp) -> FakeClock {
        FakeClock::Manual(Arc::new(Mutex::new(start)))
    }

    /// The shared time of a manual clock, to hand to cutover's `Clock::Manual`.
    pub fn shared(&self) -> Option<Arc<Mutex<Timestamp>>> {
        match self {
            FakeClock::System => None,
            FakeClock::Manual(time) => Some(time.clone()),
        }
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        match self {
            FakeClock::System => Timestamp::now(),
            FakeClock::Manual(time) => *time.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Moves a manual clock forward by `by`.
    ///
    /// # Panics
    /// On the system clock (a broken test).
    pub fn advance(&self, by: SignedDuration) {
        let FakeClock::Manual(time) = self else {
            panic!("the system clock cannot be advanced");
        };
        let mut time = time.lock().unwrap_or_else(|p| p.into_inner());
        *time = time.checked_add(by).expect("clock overflow");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_of_a_manual_clock_share_one_time() {
        let clock = FakeClock::manual("2026-08-20T10:00:00Z".parse().unwrap());
        let other = FakeClock::Manual(clock.shared().unwrap());
        other.advance(SignedDuration::from_mins(5));
        assert_eq!(clock.now().to_string(), "2026-08-20T10:05:00Z");
    }
}
