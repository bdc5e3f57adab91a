//! Where "now" comes from.
//!
//! The decision core never reads a clock: it is handed `now`. Everything that does need the time
//! (the reconciler, the fakes, the demo) asks a [`Clock`], which is either the system clock or a
//! manual one that a test or the demo moves forward by hand. Sharing one manual clock between
//! cutover and the fakes is what lets a 5-minute soak run in milliseconds while every timestamp on
//! the wire stays realistic.

use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};

/// A source of the current time.
#[derive(Clone, Debug)]
pub enum Clock {
    /// The machine's clock.
    System,
    /// A clock that only moves when told to (tests, the lab's demo); the fakes' `FakeClock`
    /// can share its time.
    Manual(Arc<Mutex<Timestamp>>),
}

impl Clock {
    /// A manual clock starting at `start`.
    pub fn manual(start: Timestamp) -> Self {
        Clock::Manual(Arc::new(Mutex::new(start)))
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::now(),
            Clock::Manual(t) => *t.lock().expect("clock lock poisoned"),
        }
    }

    /// Moves a manual clock forward by `by`; the system clock cannot be moved.
    ///
    /// # Panics
    /// On the system clock: moving real time is a programming error.
    pub fn advance(&self, by: SignedDuration) {
        match self {
            Clock::System => panic!("the system clock cannot be advanced"),
            Clock::Manual(t) => {
                let mut t = t.lock().expect("clock lock poisoned");
                *t = t.checked_add(by).expect("clock overflow");
            }
        }
    }

    /// Sets a manual clock to `to`.
    ///
    /// # Panics
    /// On the system clock.
    pub fn set(&self, to: Timestamp) {
        match self {
            Clock::System => panic!("the system clock cannot be set"),
            Clock::Manual(t) => *t.lock().expect("clock lock poisoned") = to,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start: Timestamp = "2026-08-20T10:00:00Z".parse().unwrap();
        let clock = Clock::manual(start);
        assert_eq!(clock.now(), start);
        clock.advance(SignedDuration::from_secs(300));
        assert_eq!(clock.now().to_string(), "2026-08-20T10:05:00Z");
        let other = clock.clone();
        other.advance(SignedDuration::from_secs(60));
        assert_eq!(
            clock.now().to_string(),
            "2026-08-20T10:06:00Z",
            "clones share one time"
        );
    }
}
