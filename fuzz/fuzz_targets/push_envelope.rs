//! Fuzz target: the Pub/Sub push envelope, the first thing cutover parses from any push body.
//!
//! Every byte string either decodes or is refused with an [`EnvelopeError`]; it never panics. A
//! decoded message keeps the limits the server relies on (a trimmed, non-empty message id of at
//! most 256 characters), and re-encoding it the way Pub/Sub does decodes to the same message.
#![no_main]

use cutover::events::{EnvelopeError, PushMessage, encode_push};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let msg = match PushMessage::from_body(body) {
        Ok(msg) => msg,
        Err(EnvelopeError::NotAnEnvelope(why)) => {
            assert!(!why.is_empty());
            return;
        }
        Err(e @ EnvelopeError::BadData { .. }) => {
            assert!(e.message_id().is_some_and(|id| !id.is_empty()));
            return;
        }
    };
    assert!(!msg.message_id.is_empty(), "empty message id accepted");
    assert!(msg.message_id.len() <= 256, "overlong message id accepted");
    assert_eq!(
        msg.message_id,
        msg.message_id.trim(),
        "message id not trimmed"
    );

    let at = msg.publish_time.unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let again = encode_push(
        &msg.data,
        &msg.attributes,
        &msg.message_id,
        at,
        &msg.subscription,
    );
    let bytes = serde_json::to_vec(&again).expect("an envelope serializes");
    let back = PushMessage::from_body(&bytes).expect("a re-encoded envelope decodes");
    assert_eq!(back.data, msg.data);
    assert_eq!(back.attributes, msg.attributes);
    assert_eq!(back.message_id, msg.message_id);
    assert_eq!(back.subscription, msg.subscription);
});
