//! What a failure means, decided once, and how one is shown.
//!
//! A failed call is classified where its answer is read ([`crate::gcp::ApiError::kind`]) into
//! one [`ErrorKind`]; the errors above it (`RouterError`, `MetricsError`, `ReconcileError`) keep
//! that error as their `source` and report the same kind through their own `kind()`, so nothing
//! re-reads an error's text to learn what it means. The HTTP edge (`crate::error`) turns the
//! kind into an answer. Errors display only their own part; [`chain`] shows an error with every
//! source, for logs and for the reasons cutover records. A leaf: it imports nothing of cutover.

use std::error::Error;
use std::fmt;

/// Any error kept as the source of another.
pub type Cause = Box<dyn Error + Send + Sync + 'static>;

/// What a failure means for the event being handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Worth trying again later: throttled, unavailable, no answer, out of time.
    Transient,
    /// Someone else wrote first (a stale version): read again and decide again.
    Conflict,
    /// The resource does not exist.
    NotFound,
    /// Will not succeed by retrying.
    Permanent,
}

impl ErrorKind {
    /// Whether the same event may succeed later: transient failures, and lost write races
    /// (whoever won made progress; deciding again on fresh state may do more).
    pub fn worth_retrying(self) -> bool {
        matches!(self, ErrorKind::Transient | ErrorKind::Conflict)
    }
}

/// `error` and each of its sources, joined by `": "`.
pub fn chain<'a>(error: &'a (dyn Error + 'static)) -> Chain<'a> {
    Chain(error)
}

/// See [`chain`].
#[derive(Clone, Copy)]
pub struct Chain<'a>(&'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Cause);

    #[test]
    fn a_chain_shows_every_source_in_order() {
        let inner: Cause = "inner".into();
        let e = Outer(Box::new(Outer(inner)));
        assert_eq!(chain(&e).to_string(), "outer: outer: inner");
    }
}
