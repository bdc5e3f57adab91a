//! The Pub/Sub push envelope: the JSON body Pub/Sub POSTs to cutover for every message.
//!
//! A wrapped push request looks like
//! `{"message": {"data": "<base64>", "attributes": {...}, "messageId": "…", "publishTime": "…"},
//! "subscription": "projects/p/subscriptions/s", "deliveryAttempt": 2}`.
//! Google duplicates the id and time under legacy snake_case keys (`message_id`,
//! `publish_time`), omits `attributes` and `data` when empty, and sends `deliveryAttempt` only
//! for subscriptions with a dead-letter policy. The decoder accepts any of those shapes and
//! ignores unknown fields; the fakes crate encodes the real one for tests.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use jiff::Timestamp;
use serde_json::{Map, Value};

use super::{DecodeError, lenient};
use crate::ids::MessageId;
use crate::ids::text::{excerpt, printable};

/// Longest subscription name accepted: `projects/` + a project id (at most 30 characters, 63
/// with a domain scope) + `/subscriptions/` + a subscription id (at most 255).
const MAX_SUBSCRIPTION_LEN: usize = 9 + 63 + 15 + 255;

/// Longest ordering key kept (Pub/Sub's own limit is 1,024 bytes).
const MAX_ORDERING_KEY_CHARS: usize = 1024;

/// Standard-alphabet base64 that tolerates missing padding (some emulators and hand-built
/// envelopes drop it) but nothing else.
const DATA_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One message delivered by a Pub/Sub push subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushMessage {
    /// Server-assigned message id; the key for de-duplicating redeliveries.
    pub message_id: MessageId,
    /// When Pub/Sub accepted the message, if the envelope carried a parseable time.
    pub publish_time: Option<Timestamp>,
    /// The decoded message payload (empty when the envelope had no `data`).
    pub data: Vec<u8>,
    /// Message attributes (empty when the envelope had none).
    pub attributes: BTreeMap<String, String>,
    /// Full subscription name (`projects/…/subscriptions/…`), or empty if absent. Only the
    /// characters a subscription name can have, at most 342 of them.
    pub subscription: String,
    /// Delivery attempt counter, present only for subscriptions with a dead-letter policy.
    pub delivery_attempt: Option<u32>,
    /// Ordering key, when the publisher set one (printable, at most 1,024 characters).
    pub ordering_key: Option<String>,
}

/// Why a push request body could not be turned into a [`PushMessage`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The body is not a push envelope at all (not JSON, no `message` object, no message id, or
    /// a message id or subscription name Pub/Sub would never send). Answer HTTP 400: the sender
    /// is not Pub/Sub or is misconfigured.
    #[error("not a Pub/Sub push envelope: {0}")]
    NotAnEnvelope(String),
    /// The envelope is fine but its `data` is not valid base64. Redelivery cannot fix that, so
    /// ack the message and log this.
    #[error("message {message_id:?} has undecodable data: {reason}")]
    BadData {
        /// Id of the offending message.
        message_id: String,
        /// What is wrong with the data.
        reason: String,
    },
}

impl EnvelopeError {
    /// The message id, when the envelope got far enough to have one.
    pub fn message_id(&self) -> Option<&str> {
        match self {
            EnvelopeError::NotAnEnvelope(_) => None,
            EnvelopeError::BadData { message_id, .. } => Some(message_id),
        }
    }
}

impl PushMessage {
    /// Decodes a push request body.
    ///
    /// Accepts `messageId` or `message_id` and `publishTime` or `publish_time` (either or both;
    /// camelCase wins when both are present and parse), and absent `attributes`, `data`,
    /// `deliveryAttempt` and `orderingKey`. Unknown fields are ignored. A publish time that does
    /// not parse is dropped rather than rejected. The message id must be a [`MessageId`] and the
    /// subscription, when present, must look like a subscription name: a body with anything else
    /// there did not come from Pub/Sub ([`EnvelopeError::NotAnEnvelope`], quoting a short,
    /// escaped preview).
    pub fn from_body(body: &[u8]) -> Result<PushMessage, EnvelopeError> {
        let root: Value = serde_json::from_slice(body)
            .map_err(|e| EnvelopeError::NotAnEnvelope(format!("body is not JSON: {e}")))?;
        let Value::Object(root) = root else {
            return Err(EnvelopeError::NotAnEnvelope(
                "body is not a JSON object".to_owned(),
            ));
        };
        let Some(Value::Object(msg)) = root.get("message") else {
            return Err(EnvelopeError::NotAnEnvelope(
                "body has no `message` object".to_owned(),
            ));
        };

        let raw_id = ["messageId", "message_id"]
            .iter()
            .find_map(|k| msg.get(*k).and_then(lenient::scalar_text))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| EnvelopeError::NotAnEnvelope("message has no messageId".to_owned()))?;
        let message_id =
            MessageId::parse(&raw_id).map_err(|e| EnvelopeError::NotAnEnvelope(e.to_string()))?;

        let publish_time = ["publishTime", "publish_time"]
            .iter()
            .filter_map(|k| msg.get(*k).and_then(Value::as_str))
            .find_map(|s| s.trim().parse::<Timestamp>().ok());

        let data = decode_data(msg.get("data")).map_err(|reason| EnvelopeError::BadData {
            message_id: message_id.to_string(),
            reason,
        })?;

        let attributes = lenient::string_map(msg.get("attributes"));

        let subscription = root
            .get("subscription")
            .and_then(Value::as_str)
            .unwrap_or_default();
        check_subscription(subscription).map_err(EnvelopeError::NotAnEnvelope)?;
        let subscription = subscription.to_owned();

        let delivery_attempt = delivery_attempt(&root).or_else(|| delivery_attempt(msg));

        let ordering_key = lenient::text(msg, "orderingKey")
            .map(|k| printable(&k, MAX_ORDERING_KEY_CHARS))
            .filter(|k| !k.is_empty());

        Ok(PushMessage {
            message_id,
            publish_time,
            data,
            attributes,
            subscription,
            delivery_attempt,
            ordering_key,
        })
    }

    /// The message data as a JSON object, as every event payload is.
    pub fn json_object(&self) -> Result<Map<String, Value>, DecodeError> {
        match serde_json::from_slice(&self.data) {
            Ok(Value::Object(obj)) => Ok(obj),
            Ok(_) => Err(DecodeError::new("message data is not a JSON object")),
            Err(e) => Err(DecodeError::new(format!("message data is not JSON: {e}"))),
        }
    }
}

/// A subscription name has letters, digits and `-_.~+%` (its id), `/` (the path) and `:` (a
/// domain-scoped project); empty means the envelope named none.
fn check_subscription(s: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.~+%/:".contains(c);
    if s.len() <= MAX_SUBSCRIPTION_LEN && s.chars().all(allowed) {
        return Ok(());
    }
    Err(format!(
        "subscription {:?} is not a subscription name",
        excerpt(s, 40)
    ))
}

fn decode_data(v: Option<&Value>) -> Result<Vec<u8>, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => DATA_BASE64
            .decode(s.as_bytes())
            .map_err(|e| format!("`data` is not valid base64: {e}")),
        Some(other) => Err(format!(
            "`data` is a JSON {}, not a base64 string",
            json_kind(other)
        )),
    }
}

/// `deliveryAttempt` as a positive count; 0 (the proto default) means "not tracked".
fn delivery_attempt(obj: &Map<String, Value>) -> Option<u32> {
    lenient::field(obj, "deliveryAttempt")
        .and_then(lenient::integer)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use serde_json::json;

    use super::*;
    use cutover_fakes::encode::encode_push;

    const PUSH_1: &[u8] = cutover_fakes::fixture!("payloads/pubsub-push-1.json");

    fn body_excerpt(body: &[u8]) -> String {
        excerpt(&String::from_utf8_lossy(body), 80)
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("test timestamp")
    }

    #[test]
    fn decodes_real_push_capture() {
        let m = PushMessage::from_body(PUSH_1).expect("real capture decodes");
        assert_eq!(m.message_id, "2451898607221267");
        assert_eq!(m.data, b"ckmcslkmcsiocm");
        assert!(m.attributes.is_empty());
        assert_eq!(m.publish_time, Some(ts("2021-05-24T17:08:03.509Z")));
        assert_eq!(
            m.subscription,
            "projects/grand-quarter-314716/subscriptions/metro-sub-1"
        );
        assert_eq!(m.delivery_attempt, None);
        assert_eq!(m.ordering_key, None);
    }

    #[test]
    fn snake_only_and_camel_only() {
        let snake = br#"{"message":{"data":"aGk=","message_id":"7","publish_time":"2026-08-20T10:05:00.231Z"},"subscription":"s"}"#;
        let camel = br#"{"message":{"data":"aGk=","messageId":"7","publishTime":"2026-08-20T10:05:00.231Z"},"subscription":"s"}"#;
        for body in [&snake[..], &camel[..]] {
            let m = PushMessage::from_body(body).expect("decodes");
            assert_eq!(m.message_id, "7");
            assert_eq!(m.data, b"hi");
            assert_eq!(m.publish_time, Some(ts("2026-08-20T10:05:00.231Z")));
        }
    }

    #[test]
    fn full_wire_example_with_attributes_and_attempt() {
        let body = br#"{
          "message": {
            "attributes": {"buildId": "0d97c63e", "status": "SUCCESS"},
            "data": "eyJpZCI6IjBkOTdjNjNlLi4uIn0=",
            "messageId": "2451898607221267",
            "message_id": "2451898607221267",
            "publishTime": "2026-08-20T10:04:03.509Z",
            "publish_time": "2026-08-20T10:04:03.509Z",
            "orderingKey": "api",
            "someFutureField": {"x": 1}
          },
          "subscription": "projects/acme-prod/subscriptions/cloud-builds-push",
          "deliveryAttempt": 2
        }"#;
        let m = PushMessage::from_body(body).expect("decodes");
        assert_eq!(m.attributes["status"], "SUCCESS");
        assert_eq!(m.data, br#"{"id":"0d97c63e..."}"#);
        assert_eq!(m.delivery_attempt, Some(2));
        assert_eq!(m.ordering_key.as_deref(), Some("api"));
    }

    #[test]
    fn absent_data_is_empty_and_odd_fields_are_tolerated() {
        let body = br#"{"message":{"messageId":12345,"attributes":{"n":3},"publishTime":"yesterday"},"deliveryAttempt":0}"#;
        let m = PushMessage::from_body(body).expect("decodes");
        assert_eq!(m.message_id, "12345");
        assert!(m.data.is_empty());
        assert_eq!(m.attributes["n"], "3");
        assert_eq!(m.publish_time, None);
        assert_eq!(m.delivery_attempt, None);
        assert_eq!(m.subscription, "");
    }

    #[test]
    fn unparseable_camel_time_falls_back_to_snake() {
        let body = br#"{"message":{"messageId":"1","publishTime":"bad","publish_time":"2026-01-01T00:00:00Z"}}"#;
        let m = PushMessage::from_body(body).expect("decodes");
        assert_eq!(m.publish_time, Some(ts("2026-01-01T00:00:00Z")));
    }

    #[test]
    fn not_an_envelope() {
        for body in [
            &b"not json"[..],
            b"",
            b"[1,2]",
            b"{}",
            br#"{"message":"x"}"#,
            br#"{"message":{"data":"aGk="}}"#,
            br#"{"message":{"messageId":"  "}}"#,
            br#"{"subscription":"s"}"#,
        ] {
            match PushMessage::from_body(body) {
                Err(EnvelopeError::NotAnEnvelope(_)) => {}
                other => panic!(
                    "{:?}: expected NotAnEnvelope, got {other:?}",
                    body_excerpt(body)
                ),
            }
        }
    }

    #[test]
    fn ids_and_names_pubsub_would_never_send_are_refused_with_a_preview() {
        let huge = "9".repeat(700_000);
        for (id, sub) in [
            (huge.as_str(), "projects/p/subscriptions/s"),
            ("12\n34", "projects/p/subscriptions/s"),
            ("12 34", "projects/p/subscriptions/s"),
            ("1234", "projects/p/subscriptions/s\r\nforged"),
            ("1234", "projects/p/subscriptions/s?x"),
        ] {
            let body = json!({"message": {"messageId": id, "data": "aGk="}, "subscription": sub});
            match PushMessage::from_body(&serde_json::to_vec(&body).expect("serialize")) {
                Err(EnvelopeError::NotAnEnvelope(why)) => {
                    assert!(why.len() < 200, "{} bytes", why.len());
                    assert!(!why.chars().any(char::is_control), "{why:?}");
                }
                other => panic!("{:?}: {other:?}", excerpt(id, 20)),
            }
        }
    }

    #[test]
    fn the_ordering_key_is_kept_printable() {
        let body = br#"{"message":{"messageId":"1","orderingKey":"api\u001b[2J\n"}}"#;
        let m = PushMessage::from_body(body).expect("decodes");
        assert_eq!(m.ordering_key.as_deref(), Some("api [2J"));
    }

    #[test]
    fn bad_base64_is_bad_data_with_the_id() {
        for data in [r#""***""#, r#""aGk=x""#, "17", "{}"] {
            let body = format!(r#"{{"message":{{"messageId":"42","data":{data}}}}}"#);
            let err = PushMessage::from_body(body.as_bytes()).expect_err("bad data");
            assert_eq!(err.message_id(), Some("42"), "{data}");
            assert!(matches!(err, EnvelopeError::BadData { .. }), "{data}");
        }
    }

    #[test]
    fn unpadded_base64_is_accepted() {
        let body = br#"{"message":{"messageId":"1","data":"aGk"}}"#;
        assert_eq!(PushMessage::from_body(body).expect("decodes").data, b"hi");
    }

    #[test]
    fn encode_push_has_the_wire_shape() {
        let t = ts("2021-05-24T17:08:03.509123Z");
        let v = encode_push(
            b"ckmcslkmcsiocm",
            &BTreeMap::new(),
            "2451898607221267",
            t,
            "projects/grand-quarter-314716/subscriptions/metro-sub-1",
        );
        let real: Value = serde_json::from_slice(PUSH_1).expect("json");
        assert_eq!(v, real);

        let attrs = BTreeMap::from([("k".to_owned(), "v".to_owned())]);
        let v = encode_push(b"", &attrs, "1", ts("2026-08-20T10:05:00Z"), "s");
        assert_eq!(v["message"]["publishTime"], "2026-08-20T10:05:00Z");
        assert_eq!(v["message"]["attributes"]["k"], "v");
        assert!(v["message"].get("data").is_none());
    }

    #[test]
    fn round_trip() {
        let attrs = BTreeMap::from([
            ("buildId".to_owned(), "b-1".to_owned()),
            ("status".to_owned(), "SUCCESS".to_owned()),
        ]);
        let t = ts("2026-08-20T10:04:03.509Z");
        let body = encode_push(
            b"\x00\xffbinary",
            &attrs,
            "99",
            t,
            "projects/p/subscriptions/s",
        );
        let bytes = serde_json::to_vec(&body).expect("serialize");
        let m = PushMessage::from_body(&bytes).expect("round trip");
        assert_eq!(
            m,
            PushMessage {
                message_id: MessageId::parse("99").expect("id"),
                publish_time: Some(t),
                data: b"\x00\xffbinary".to_vec(),
                attributes: attrs,
                subscription: "projects/p/subscriptions/s".to_owned(),
                delivery_attempt: None,
                ordering_key: None,
            }
        );
    }

    /// Arbitrary JSON, biased towards the keys and shapes an envelope uses.
    pub(crate) fn arb_json() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("message".to_owned()),
            Just("messageId".to_owned()),
            Just("message_id".to_owned()),
            Just("publishTime".to_owned()),
            Just("publish_time".to_owned()),
            Just("data".to_owned()),
            Just("attributes".to_owned()),
            Just("orderingKey".to_owned()),
            Just("deliveryAttempt".to_owned()),
            Just("subscription".to_owned()),
            "[a-zA-Z_]{0,8}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            ".{0,24}".prop_map(Value::String),
            "[A-Za-z0-9+/=]{0,24}".prop_map(Value::String),
            Just(Value::String("2026-08-20T10:04:03.509Z".to_owned())),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner, 0..7)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = PushMessage::from_body(&body);
        }

        #[test]
        fn never_panics_on_json_ish_envelopes(
            message in arb_json(),
            sub in arb_json(),
            attempt in arb_json(),
        ) {
            let body = json!({"message": message, "subscription": sub, "deliveryAttempt": attempt});
            let bytes = serde_json::to_vec(&body).expect("serialize");
            let _ = PushMessage::from_body(&bytes);
            let _ = PushMessage::from_body(&serde_json::to_vec(&message).expect("serialize"));
        }

        #[test]
        fn encode_decode_round_trip(
            data in prop::collection::vec(any::<u8>(), 0..256),
            attrs in prop::collection::btree_map(".{1,12}", ".{0,12}", 0..4),
            id in "[0-9]{1,18}",
            millis in 0i64..4_000_000_000_000,
        ) {
            let t = Timestamp::from_millisecond(millis).expect("in range");
            let body = serde_json::to_vec(&encode_push(&data, &attrs, &id, t, "projects/p/subscriptions/s")).expect("serialize");
            let m = PushMessage::from_body(&body).expect("decodes");
            prop_assert_eq!(m.data, data);
            prop_assert_eq!(m.attributes, attrs);
            prop_assert_eq!(m.message_id.as_str(), id.as_str());
            prop_assert_eq!(m.publish_time, Some(t));
        }
    }
}
