//! The seal on a carried read: an HMAC-SHA256 that the tick puts on the read it carries and the
//! instance that gets the push checks before deciding on it (`reconcile::fanout`).
//!
//! Without it, a message on the evaluations topic would be trusted as cutover's own listing,
//! and cutover would write back a service body of the publisher's making: whoever can publish
//! there (a project-wide `roles/pubsub.publisher` reaches the topic) and read the service's
//! etag could change its image or env with cutover's rights. With it, a carried read is decided
//! on only if an instance holding the shared key (`CUTOVER_EVALUATION_KEY`) sealed it; any
//! other is ignored and the service read afresh, so a message can again only ask for an
//! evaluation.
//!
//! The tag covers the exact bytes the message carries, not a re-serialisation: the service's
//! name, the listing time as written and the read's JSON as written, each prefixed with its
//! length so that no byte can move from one field to another, after a label naming what is
//! sealed. Checking is constant-time (`ring::hmac::verify`), against the current key and then
//! the previous one (`CUTOVER_EVALUATION_KEY_PREVIOUS`), so that while a new key rolls out the
//! messages sealed by instances still on the old one are used, not read again.

use ring::hmac;

/// What a seal says it covers, so that a tag made for anything else with the same key (should
/// the key ever be reused) never verifies here.
const LABEL: &[u8] = b"cutover.dev/carried-read/v1";

/// The keys shared by every instance: one seals and verifies, the previous one only verifies.
pub struct SealKeys {
    current: hmac::Key,
    previous: Option<hmac::Key>,
}

/// Never shows the keys.
impl std::fmt::Debug for SealKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealKeys")
            .field("current", &"<redacted>")
            .field("previous", &self.previous.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The parts of a message a seal covers, as the message carries them.
#[derive(Clone, Copy, Debug)]
pub struct Sealed<'a> {
    /// The service's resource name.
    pub service: &'a str,
    /// The listing time, as written in the message.
    pub listed_at: &'a str,
    /// The read, the JSON as written in the message.
    pub read: &'a str,
}

impl Sealed<'_> {
    /// The bytes the tag is computed over: the label, then each part after its length.
    fn bytes(&self) -> Vec<u8> {
        let parts = [self.service, self.listed_at, self.read];
        let len = LABEL.len() + parts.iter().map(|p| 8 + p.len()).sum::<usize>();
        let mut b = Vec::with_capacity(len);
        b.extend_from_slice(LABEL);
        for p in parts {
            b.extend_from_slice(&(p.len() as u64).to_be_bytes());
            b.extend_from_slice(p.as_bytes());
        }
        b
    }
}

impl SealKeys {
    /// Keys from their bytes (checked for length by `config`).
    pub fn new(current: &[u8], previous: Option<&[u8]>) -> SealKeys {
        let key = |k: &[u8]| hmac::Key::new(hmac::HMAC_SHA256, k);
        SealKeys {
            current: key(current),
            previous: previous.map(key),
        }
    }

    /// The tag of `sealed` under the current key.
    pub fn seal(&self, sealed: Sealed<'_>) -> Vec<u8> {
        hmac::sign(&self.current, &sealed.bytes()).as_ref().to_vec()
    }

    /// Whether `tag` is the current or the previous key's tag of `sealed`.
    pub fn verify(&self, sealed: Sealed<'_>, tag: &[u8]) -> bool {
        let bytes = sealed.bytes();
        std::iter::once(&self.current)
            .chain(&self.previous)
            .any(|k| hmac::verify(k, &bytes, tag).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OTHER: &[u8] = b"fedcba9876543210fedcba9876543210";

    fn sealed() -> Sealed<'static> {
        Sealed {
            service: "projects/p-1/locations/europe-west1/services/api",
            listed_at: "2026-12-05T10:00:00Z",
            read: r#"{"etag":"\"e1\"","template":{"containers":[{"image":"a"}]}}"#,
        }
    }

    #[test]
    fn a_seal_verifies_what_it_sealed_and_nothing_else() {
        let keys = SealKeys::new(KEY, None);
        let tag = keys.seal(sealed());
        assert_eq!(tag.len(), 32, "HMAC-SHA256");
        assert!(keys.verify(sealed(), &tag));
        let s = sealed();
        for changed in [
            Sealed {
                service: "projects/p-1/locations/europe-west1/services/web",
                ..s
            },
            Sealed {
                listed_at: "2026-12-05T10:00:01Z",
                ..s
            },
            Sealed {
                read: r#"{"etag":"\"e1\"","template":{"containers":[{"image":"evil"}]}}"#,
                ..s
            },
            // The same bytes split differently between the parts.
            Sealed {
                service: "projects/p-1/locations/europe-west1/services/api2026-12-05T10:00:00Z",
                listed_at: "",
                ..s
            },
        ] {
            assert!(!keys.verify(changed, &tag), "{changed:?}");
        }
        let mut flipped = tag.clone();
        flipped[0] ^= 1;
        assert!(!keys.verify(sealed(), &flipped));
        assert!(!keys.verify(sealed(), &tag[..31]), "a truncated tag");
        assert!(!keys.verify(sealed(), b""), "no tag");
    }

    #[test]
    fn another_key_s_seal_does_not_verify() {
        let tag = SealKeys::new(OTHER, None).seal(sealed());
        assert!(!SealKeys::new(KEY, None).verify(sealed(), &tag));
    }

    #[test]
    fn the_previous_key_verifies_but_never_seals() {
        let old = SealKeys::new(OTHER, None).seal(sealed());
        let rotated = SealKeys::new(KEY, Some(OTHER));
        assert!(rotated.verify(sealed(), &old), "sealed before the rotation");
        let new = rotated.seal(sealed());
        assert_ne!(new, old, "seals with the current key");
        assert!(SealKeys::new(KEY, None).verify(sealed(), &new));
    }

    #[test]
    fn the_keys_never_show_in_debug() {
        let shown = format!("{:?}", SealKeys::new(KEY, Some(OTHER)));
        assert!(
            !shown.contains("0123") && !shown.contains("fedc"),
            "{shown}"
        );
        assert!(shown.contains("redacted"), "{shown}");
    }
}
