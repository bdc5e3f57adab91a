//! Fuzz target: Cloud Monitoring incidents, which roll a rollout back at once.
//!
//! The input is the message `data`. Decoding never panics; a refusal's reason is short and
//! printable; a decoded incident has a valid id (at most 64 characters, no control character),
//! a printable summary of at most 512 characters and printable, bounded policy name, resource
//! type and state; the service it names (if any) is a valid Cloud Run service name; and whatever
//! service the server would act on (`Scope::resolve` of the incident's project, location and
//! service, as `POST /pubsub/alerts` does) is in the project and regions its ticks evaluate and
//! safe in a Run API URL path, dot segments included (finding F2, issues 9 and 10 in
//! docs/reliability.md).
#![no_main]

mod common;

use common::{assert_loggable, check_resolution};
use cutover::events::alert::{MAX_POLICY_NAME_CHARS, MAX_SUMMARY_CHARS};
use cutover::events::{Incident, IncidentId, IncidentState, MessageId, PushMessage, ServiceName};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let msg = PushMessage {
        message_id: MessageId::parse("1").expect("a message id"),
        publish_time: None,
        data: data.to_vec(),
        attributes: Default::default(),
        subscription: "projects/p/subscriptions/alerts".into(),
        delivery_attempt: None,
        ordering_key: None,
    };
    let incident = match Incident::from_message(&msg) {
        Ok(i) => i,
        Err(e) => {
            assert_loggable("decode error", e.reason(), 512);
            return;
        }
    };
    assert_eq!(
        IncidentId::parse(&incident.incident_id),
        Ok(incident.incident_id.clone())
    );
    assert_loggable("incident id", &incident.incident_id, 64);
    assert_loggable("summary", &incident.summary, MAX_SUMMARY_CHARS);
    assert_loggable("policy name", &incident.policy_name, MAX_POLICY_NAME_CHARS);
    assert_loggable("resource type", &incident.resource_type, 128);
    if let IncidentState::Other(state) = &incident.state {
        assert_loggable("state", state, 65);
    }
    if let Some(revision) = &incident.revision {
        assert_loggable("revision", revision, 63);
    }
    let Some(named) = incident.named() else {
        return;
    };
    assert_eq!(ServiceName::parse(named.service), Ok(named.service.clone()));
    check_resolution(named);
});
