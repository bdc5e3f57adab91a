//! Fuzz target: Cloud Build notifications, which decide which service a rollout starts on.
//!
//! The input is the message `data` (the `Build` resource as JSON); its first byte picks whether
//! the message also carries Cloud Build's `buildId`/`status` attributes. Decoding never panics;
//! a decoded service is a valid Cloud Run service name and, for such a build, a decoded region
//! contains only lowercase letters, digits and hyphens; and whatever service the server would
//! act on (`ServiceRef::checked`, as `POST /pubsub/builds` does) is safe in a Run API URL path,
//! dot segments included (finding F2 in docs/reliability.md).
#![no_main]

use std::collections::BTreeMap;

use cutover::events::{BuildNotification, PushMessage, check_service_name};
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

fuzz_target!(|input: &[u8]| {
    let (with_attributes, data) = match input.split_first() {
        Some((first, rest)) => (first & 1 == 1, rest),
        None => (false, input),
    };
    let attributes = if with_attributes {
        BTreeMap::from([
            ("buildId".to_owned(), "attr-build".to_owned()),
            ("status".to_owned(), "SUCCESS".to_owned()),
        ])
    } else {
        BTreeMap::new()
    };
    let msg = PushMessage {
        message_id: "1".into(),
        publish_time: None,
        data: data.to_vec(),
        attributes,
        subscription: "projects/p/subscriptions/cloud-builds".into(),
        delivery_attempt: None,
        ordering_key: None,
    };
    let Ok(build) = BuildNotification::from_message(&msg) else {
        return;
    };
    assert!(!build.build_id.is_empty(), "a build without an id decoded");
    let _ = build.status.as_str();
    let _ = build.status.is_terminal();
    // The region and project matter only for a build that names a service (others are ignored).
    let Some(service) = build.service() else {
        return;
    };
    assert_eq!(check_service_name(service), Ok(()), "service {service:?}");
    if let Some(region) = build.region() {
        assert!(
            region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !region.is_empty(),
            "region {region:?}"
        );
    }
    // What the server does with the build: its project (or cutover's), its region (or
    // cutover's default), the service.
    let project = build.project_id.as_deref().unwrap_or("acme-prod");
    let region = build.region().unwrap_or("us-central1");
    if let Ok(target) = ServiceRef::checked(project, region, service) {
        for part in [&target.project, &target.region, &target.name] {
            assert!(path_safe(part), "{part:?} reaches a URL path");
        }
    }
});
