//! Fuzz target: Cloud Build notifications, which decide which service a rollout starts on.
//!
//! The input is the message `data` (the `Build` resource as JSON); its first byte picks whether
//! the message also carries Cloud Build's `buildId`/`status` attributes. Decoding never panics;
//! a refusal's reason (logged and answered) is short and printable; a decoded build's id is a
//! valid build id (at most 64 characters, no control character), each service it names (its
//! `_SERVICE_NAME`, or its deploy steps' `gcloud run deploy NAME … --no-traffic`) a valid Cloud
//! Run service name and, for such a build, its project and region valid ids, every skipped
//! step's reason short and printable; and whatever
//! service the server would act on (`Scope::resolve`, as `POST /pubsub/builds` does) is in the
//! project and regions its ticks evaluate and safe in a Run API URL path, dot segments included
//! (findings F2 and, for the scope and the bounds, issues 9 and 10 in docs/reliability.md).
#![no_main]

mod common;

use std::collections::BTreeMap;

use common::{assert_loggable, check_resolution};
use cutover::events::{BuildId, BuildNotification, MessageId, PushMessage, ServiceName};
use libfuzzer_sys::fuzz_target;

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
        message_id: MessageId::parse("1").expect("a message id"),
        publish_time: None,
        data: data.to_vec(),
        attributes,
        subscription: "projects/p/subscriptions/cloud-builds".into(),
        delivery_attempt: None,
        ordering_key: None,
    };
    let build = match BuildNotification::from_message(&msg) {
        Ok(b) => b,
        Err(e) => {
            assert_loggable("decode error", e.reason(), 512);
            return;
        }
    };
    assert_eq!(BuildId::parse(&build.build_id), Ok(build.build_id.clone()));
    assert_loggable("build id", &build.build_id, 64);
    assert_loggable("status", build.status.as_str(), 65);
    let _ = build.status.is_terminal();
    // The region and project matter only for a build that names a service (others are ignored):
    // by `_SERVICE_NAME`, or by the `gcloud run deploy … --no-traffic` commands of its steps,
    // which the input's `steps` (scripts included) exercise.
    for reason in build.skipped() {
        assert_loggable("skipped deploy step", &reason, 1024);
    }
    let targets = build.targets();
    if targets.is_empty() {
        assert_loggable("no target", &build.why_no_target(), 64 * 1024);
    }
    for named in targets {
        assert_eq!(ServiceName::parse(named.service), Ok(named.service.clone()));
        for part in [named.project.map(|p| &**p), named.region.map(|r| &**r)]
            .into_iter()
            .flatten()
        {
            assert_loggable("project or region", part, 63);
        }
        check_resolution(named);
    }
});
