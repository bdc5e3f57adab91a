//! Fuzz target: the Pub/Sub push envelope, the first thing cutover parses from any push body.
//!
//! Every byte string either decodes or is refused with an [`EnvelopeError`]; it never panics.
//! A refusal's reason (logged, and answered in a 400) is short and printable. A decoded message
//! keeps the limits the server relies on: a valid message id (at most 64 characters of letters,
//! digits, `-` and `_`), a subscription name of at most 342 characters with no control
//! character, a printable ordering key; and re-encoding it the way Pub/Sub does decodes to the
//! same message.
#![no_main]

mod common;

use common::assert_loggable;
use cutover::events::{EnvelopeError, MessageId, PushMessage};
use cutover_fakes::encode::encode_push;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let msg = match PushMessage::from_body(body) {
        Ok(msg) => msg,
        Err(EnvelopeError::NotAnEnvelope(why)) => {
            assert!(!why.is_empty());
            assert_loggable("refusal", &why, 512);
            return;
        }
        Err(e @ EnvelopeError::BadData { .. }) => {
            assert!(e.message_id().is_some_and(|id| !id.is_empty()));
            assert_loggable("bad data", &e.to_string(), 512);
            return;
        }
    };
    assert_eq!(
        MessageId::parse(&msg.message_id),
        Ok(msg.message_id.clone())
    );
    assert_loggable("message id", &msg.message_id, 64);
    assert_loggable("subscription", &msg.subscription, 342);
    if let Some(key) = &msg.ordering_key {
        assert_loggable("ordering key", key, 1024);
    }

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
