//! Fuzz target: Cloud Monitoring incidents, which roll a rollout back at once.
//!
//! The input is the message `data`. Decoding never panics; a decoded incident has an id and the
//! service it names (if any) is a valid Cloud Run service name; and whatever service the server
//! would act on (`ServiceRef::checked` of the incident's project, location and service, as
//! `POST /pubsub/alerts` does) is safe in a Run API URL path, dot segments included (finding F2
//! in docs/reliability.md).
#![no_main]

use cutover::events::{Incident, PushMessage, check_service_name};
use cutover::target::ServiceRef;
use libfuzzer_sys::fuzz_target;

/// A URL path segment that means only itself: no separators, queries, fragments or escapes,
/// and no dot segments (which a URL parser folds away).
fn path_safe(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

fuzz_target!(|data: &[u8]| {
    let msg = PushMessage {
        message_id: "1".into(),
        publish_time: None,
        data: data.to_vec(),
        attributes: Default::default(),
        subscription: "projects/p/subscriptions/alerts".into(),
        delivery_attempt: None,
        ordering_key: None,
    };
    let Ok(incident) = Incident::from_message(&msg) else {
        return;
    };
    assert!(
        !incident.incident_id.is_empty(),
        "an incident without an id decoded"
    );
    if let Some(service) = &incident.service {
        assert_eq!(check_service_name(service), Ok(()), "service {service:?}");
    }
    if let Some(service) = &incident.service {
        let project = incident.project.as_deref().unwrap_or("acme-prod");
        let location = incident.location.as_deref().unwrap_or("us-central1");
        if let Ok(target) = ServiceRef::checked(project, location, service) {
            for part in [&target.project, &target.region, &target.name] {
                assert!(path_safe(part), "{part:?} reaches a URL path");
            }
        }
    }
});
