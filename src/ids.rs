//! Identifiers taken from messages and settings, checked once, where they enter; and free text
//! made safe to keep ([`text`]).
//!
//! A leaf: it imports nothing of cutover, so the decision core, the event decoders and the API
//! clients can all name services and revisions with the same checked types
//! ([`crate::target::ServiceRef`] is built from them only).
//!
//! Every id cutover acts on or logs comes from an unauthenticated-by-content message body (a
//! valid push token says who sent it, not that its fields are sane). An [`Id`] can only be made
//! by [`Id::parse`], which enforces the id's shape and length, so an id of 700 KB, or one with a
//! newline or an ANSI escape in it, cannot be represented past the decoders: nothing downstream
//! (logs, responses, the handled-builds memory, Run API URL paths) has to re-check it.
//!
//! | id | rule | why |
//! |---|---|---|
//! | [`ServiceName`] | 1–49 lowercase letters, digits, `-`; starts with a letter, does not end with `-` | Cloud Run's own rule for service names (Run v2 `serviceId`: "fewer than 50 characters") |
//! | [`RevisionName`] | 1–63, same characters and ends as a service name | revision names are `{service}-{5 digits}-{3 letters}` or a user-given name under the same rule |
//! | [`Region`] | 1–63 lowercase letters, digits, `-`; starts with a letter | `us-central1`, `europe-west1` |
//! | [`ProjectId`] | 1–63 lowercase letters, digits, `-`, `.`, `:`; starts with a letter or digit | project ids, project numbers and domain-scoped ids (`example.com:proj`) |
//! | [`BuildId`], [`MessageId`] | 1–64 ASCII letters, digits, `-`, `_` | Cloud Build ids are UUIDs (36 characters) and Pub/Sub message ids decimal strings; both APIs only promise "a string", so the rule bounds the shape without betting every push on today's format |
//! | [`IncidentId`] | 1–64 ASCII letters, digits, `.`, `-`, `_` | Monitoring incident ids look like `0.nrwotmyokd9n` |
//!
//! None of these rules admits a control character, a space, `/`, `?`, `#` or `%`, so an id is
//! safe in a log line, a JSON body and a URL path segment as it is. Free text (an incident's
//! summary) has no shape; it is bounded and made printable by [`text::printable`].
//!
//! The service name rule is the Run Admin API v2's for `serviceId` ("must begin with letter, and
//! cannot end with hyphen; must contain fewer than 50 characters", lowercase letters, digits and
//! hyphens like every segment of the parent path); every id cutover acts on passes it, whether
//! it came from a build, an incident, a listing or a test.

pub mod text;

use std::fmt;
use std::marker::PhantomData;

use text::excerpt;

/// The rule one kind of id obeys.
pub trait Shape {
    /// What the id is, for people (`"build id"`).
    const WHAT: &'static str;
    /// Longest accepted id, in bytes (every accepted character is ASCII).
    const MAX_LEN: usize;
    /// Whether `c` may appear in the id.
    fn allows(c: char) -> bool;
    /// Any rule on the first and last character, as a reason when broken.
    fn check_ends(_s: &str) -> Result<(), &'static str> {
        Ok(())
    }
}

/// An id of kind `S`, known to obey `S`'s rule.
pub struct Id<S> {
    text: String,
    shape: PhantomData<fn() -> S>,
}

/// Why a string is not an id of some kind. Its message quotes at most a short, escaped preview
/// of the string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {preview:?} is not valid: {why}")]
pub struct IdError {
    /// What the id was to be (`"build id"`).
    pub what: &'static str,
    /// The start of the string, control characters replaced.
    pub preview: String,
    /// Which rule it breaks.
    pub why: String,
}

/// How much of a refused id an error quotes.
const PREVIEW_CHARS: usize = 40;

impl<S: Shape> Id<S> {
    /// Checks `s` against `S`'s rule (no trimming: callers trim what the wire may pad).
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let refuse = |why: String| IdError {
            what: S::WHAT,
            preview: excerpt(s, PREVIEW_CHARS),
            why,
        };
        if s.is_empty() {
            return Err(refuse("it is empty".into()));
        }
        if s.len() > S::MAX_LEN {
            return Err(refuse(format!(
                "it is longer than {} characters",
                S::MAX_LEN
            )));
        }
        if let Some(bad) = s.chars().find(|c| !S::allows(*c)) {
            return Err(refuse(format!("it contains {bad:?}")));
        }
        S::check_ends(s).map_err(|why| refuse(why.into()))?;
        Ok(Id {
            text: s.to_owned(),
            shape: PhantomData,
        })
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// An id a message may carry and that matters only when `needed` (a build's region matters only
/// if the build names a service): `Ok(None)` when absent, or when invalid and not needed.
pub(crate) fn optional<S: Shape>(
    raw: Option<&str>,
    needed: bool,
) -> Result<Option<Id<S>>, IdError> {
    match raw.map(Id::parse) {
        None => Ok(None),
        Some(Ok(id)) => Ok(Some(id)),
        Some(Err(e)) if needed => Err(e),
        Some(Err(_)) => Ok(None),
    }
}

impl<S> Clone for Id<S> {
    fn clone(&self) -> Self {
        Id {
            text: self.text.clone(),
            shape: PhantomData,
        }
    }
}

impl<S> PartialEq for Id<S> {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl<S> Eq for Id<S> {}

impl<S> PartialOrd for Id<S> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<S> Ord for Id<S> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl<S> std::hash::Hash for Id<S> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl<S> PartialEq<str> for Id<S> {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl<S> PartialEq<&str> for Id<S> {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl<S> fmt::Display for Id<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<S> fmt::Debug for Id<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl<S> std::ops::Deref for Id<S> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl<S> AsRef<str> for Id<S> {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl<S> serde::Serialize for Id<S> {
    fn serialize<Z: serde::Serializer>(&self, z: Z) -> Result<Z::Ok, Z::Error> {
        z.serialize_str(&self.text)
    }
}

fn lower_digit_hyphen(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

fn token(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// A letter first, no hyphen last: Cloud Run's rule for the names it gives and accepts.
fn run_name_ends(s: &str) -> Result<(), &'static str> {
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("it does not start with a lowercase letter");
    }
    if s.ends_with('-') {
        return Err("it ends with a hyphen");
    }
    Ok(())
}

/// The id kinds (types only: never instantiated).
pub mod shape {
    use super::*;

    /// See [`ServiceName`].
    pub enum Service {}
    /// See [`RevisionName`].
    pub enum Revision {}
    /// See [`Region`](super::Region).
    pub enum Region {}
    /// See [`ProjectId`].
    pub enum Project {}
    /// See [`BuildId`].
    pub enum Build {}
    /// See [`MessageId`].
    pub enum Message {}
    /// See [`IncidentId`].
    pub enum Incident {}

    impl Shape for Service {
        const WHAT: &'static str = "Cloud Run service name";
        const MAX_LEN: usize = 49;
        fn allows(c: char) -> bool {
            lower_digit_hyphen(c)
        }
        fn check_ends(s: &str) -> Result<(), &'static str> {
            run_name_ends(s)
        }
    }

    impl Shape for Revision {
        const WHAT: &'static str = "Cloud Run revision name";
        const MAX_LEN: usize = 63;
        fn allows(c: char) -> bool {
            lower_digit_hyphen(c)
        }
        fn check_ends(s: &str) -> Result<(), &'static str> {
            run_name_ends(s)
        }
    }

    impl Shape for Region {
        const WHAT: &'static str = "region";
        const MAX_LEN: usize = 63;
        fn allows(c: char) -> bool {
            lower_digit_hyphen(c)
        }
        fn check_ends(s: &str) -> Result<(), &'static str> {
            if s.starts_with(|c: char| c.is_ascii_lowercase()) {
                Ok(())
            } else {
                Err("it does not start with a lowercase letter")
            }
        }
    }

    impl Shape for Project {
        const WHAT: &'static str = "project id";
        const MAX_LEN: usize = 63;
        fn allows(c: char) -> bool {
            lower_digit_hyphen(c) || c == '.' || c == ':'
        }
        fn check_ends(s: &str) -> Result<(), &'static str> {
            // A letter or digit first also rules out `.` and `..` path segments.
            if s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
                Ok(())
            } else {
                Err("it does not start with a lowercase letter or a digit")
            }
        }
    }

    impl Shape for Build {
        const WHAT: &'static str = "build id";
        const MAX_LEN: usize = 64;
        fn allows(c: char) -> bool {
            token(c)
        }
    }

    impl Shape for Message {
        const WHAT: &'static str = "Pub/Sub message id";
        const MAX_LEN: usize = 64;
        fn allows(c: char) -> bool {
            token(c)
        }
    }

    impl Shape for Incident {
        const WHAT: &'static str = "incident id";
        const MAX_LEN: usize = 64;
        fn allows(c: char) -> bool {
            token(c) || c == '.'
        }
    }
}

/// A Cloud Run service name (`api`).
pub type ServiceName = Id<shape::Service>;
/// A Cloud Run revision name (`api-00007-kip`).
pub type RevisionName = Id<shape::Revision>;
/// A Google Cloud region (`us-central1`).
pub type Region = Id<shape::Region>;
/// A project id or number (`acme-prod`, `123456789012`).
pub type ProjectId = Id<shape::Project>;
/// A Cloud Build id (`0d97c63e-a349-4bf7-80d0-8f6e21786d87`).
pub type BuildId = Id<shape::Build>;
/// A Pub/Sub message id (`2451898607221267`).
pub type MessageId = Id<shape::Message>;
/// A Monitoring incident id (`0.nrwotmyokd9n`).
pub type IncidentId = Id<shape::Incident>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_follow_cloud_runs_rule() {
        for ok in ["api", "a", "my-service-2", &"a".repeat(49)] {
            assert!(ServiceName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Api",
            "1api",
            "-api",
            "api-",
            "my_service",
            "api.v2",
            "ap i",
            "apí",
            "a\nb",
            "..",
            &"a".repeat(50),
        ] {
            assert!(ServiceName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn each_kind_has_its_shape() {
        assert!(RevisionName::parse("api-00007-kip").is_ok());
        assert!(RevisionName::parse(&format!("a{}", "b".repeat(62))).is_ok());
        assert!(RevisionName::parse(&"a".repeat(64)).is_err());
        assert!(Region::parse("europe-west1").is_ok());
        assert!(Region::parse("us-central1/../x").is_err());
        assert!(Region::parse("1us").is_err());
        for ok in ["acme-prod", "123456789012", "example.com:proj"] {
            assert!(ProjectId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["P", "..", ".x", "p/locations/l", "p#"] {
            assert!(ProjectId::parse(bad).is_err(), "{bad}");
        }
        for ok in ["0d97c63e-a349-4bf7-80d0-8f6e21786d87", "BUILD_ID", "b-42"] {
            assert!(BuildId::parse(ok).is_ok(), "{ok}");
        }
        assert!(BuildId::parse(&"a".repeat(65)).is_err());
        assert!(MessageId::parse("2451898607221267").is_ok());
        assert!(MessageId::parse("12 34").is_err());
        assert!(IncidentId::parse("0.nrwotmyokd9n").is_ok());
        assert!(IncidentId::parse("0.x\r\nforged").is_err());
    }

    #[test]
    fn an_error_quotes_a_short_escaped_preview() {
        let huge = format!("\u{1b}[31m{}\nnext line", "x".repeat(700_000));
        let e = BuildId::parse(&huge).expect_err("too long");
        let shown = e.to_string();
        assert!(shown.len() < 200, "{} bytes", shown.len());
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.starts_with("build id "), "{shown}");
        let e = IncidentId::parse("a\nb").expect_err("newline");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn ids_compare_and_print_as_their_text() {
        let id = BuildId::parse("b-1").unwrap();
        assert_eq!(id, "b-1");
        assert_eq!(id.to_string(), "b-1");
        assert_eq!(format!("{id:?}"), "\"b-1\"");
        assert_eq!(serde_json::to_value(&id).unwrap(), "b-1");
    }
}
