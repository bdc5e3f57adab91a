//! Fuzz target: Cloud Monitoring incidents, which roll a rollout back at once.
//!
//! The input is the message `data`. Decoding never panics; a decoded incident has an id, and the
//! service it names (if any) is a valid Cloud Run service name, because it becomes part of a Run
//! API URL. With `CUTOVER_FUZZ_STRICT_PATHS=1` the project and location labels, which become URL
//! path segments too, must be path-safe (see docs/reliability.md: today they are not validated).
#![no_main]

use cutover::events::{Incident, PushMessage, check_service_name};
use libfuzzer_sys::fuzz_target;

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
    if std::env::var_os("CUTOVER_FUZZ_STRICT_PATHS").is_some() && incident.service.is_some() {
        for part in [&incident.project, &incident.location]
            .into_iter()
            .flatten()
        {
            assert!(path_safe(part), "{part:?} reaches a URL path");
        }
    }
});
