//! The Cloud Run router: a decision's split and record ↔ a Run v2 `Service`.
//!
//! Observing reduces a service to an [`Observed`]: `LATEST` traffic resolves to the latest ready
//! revision, revisions are short ids, ready revisions are the latest ready one and those Cloud
//! Run reports routes for. Applying sends the service back exactly as read, with `traffic` and
//! cutover's record annotations replaced, guarded by its `etag`, and waits for the operation.
//! Tags that people put on other revisions (at 0%) are kept.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{Observation, RouterError, TrafficRouter};
use crate::decision::record::RECORD_KEYS;
use crate::decision::{CANDIDATE_TAG, Observed, STABLE_TAG, Write};
use crate::gcp::ApiError;
use crate::gcp::run::{AllocationType, Fetched, RunClient, Service, short_name};
use crate::target::ServiceRef;

/// What a guarded write needs of a read: the etag and the service exactly as read.
#[derive(Clone, Debug)]
pub struct Version {
    /// Cloud Run's concurrency token.
    pub etag: String,
    /// The service exactly as read, sent back with only traffic and cutover's annotations
    /// changed.
    pub body: Arc<Value>,
}

/// Routes traffic through the Cloud Run Admin API v2.
#[derive(Clone)]
pub struct CloudRunRouter {
    run: RunClient,
}

impl CloudRunRouter {
    pub fn new(run: RunClient) -> Self {
        CloudRunRouter { run }
    }
}

/// The Run API's error, kept as the source, under the kind it was given where it was read.
fn router_error(e: ApiError) -> RouterError {
    RouterError::new(e.kind(), e)
}

/// Reduces a fetched service to what decisions need, keeping what a write needs beside it.
pub fn observed(target: ServiceRef, f: Fetched) -> Observation<Version> {
    let s = &f.service;
    let latest_ready = (!s.latest_ready_revision.is_empty())
        .then(|| short_name(&s.latest_ready_revision).to_string());
    let mut allocation: BTreeMap<String, u8> = BTreeMap::new();
    for t in &s.traffic {
        if t.percent == 0 {
            continue;
        }
        let rev = match t.kind {
            AllocationType::Latest => latest_ready.clone().unwrap_or_else(|| "(latest)".into()),
            _ => short_name(&t.revision).to_string(),
        };
        let e = allocation.entry(rev).or_insert(0);
        *e = e.saturating_add(t.percent);
    }
    let mut ready: BTreeSet<String> = latest_ready.iter().cloned().collect();
    let mut tag_urls = BTreeMap::new();
    for t in &s.traffic_statuses {
        if t.kind == AllocationType::Revision && !t.revision.is_empty() {
            ready.insert(short_name(&t.revision).to_string());
        }
        if !t.tag.is_empty() && !t.uri.is_empty() {
            tag_urls.insert(t.tag.clone(), t.uri.clone());
        }
    }
    let observed = Observed {
        service: target,
        latest_ready,
        allocation,
        ready,
        tag_urls,
        annotations: s.annotations.clone(),
    };
    Observation {
        observed,
        version: Version {
            etag: s.etag.clone(),
            body: Arc::new(f.raw),
        },
    }
}

/// The body of the guarded write: the service as read, traffic and record replaced.
pub fn patch_body(read: &Observation<Version>, write: &Write) -> Value {
    let mut body = (*read.version.body).clone();
    let Some(obj) = body.as_object_mut() else {
        return body;
    };
    // Annotations: everything that is not cutover's record stays exactly as it was.
    let mut annotations: serde_json::Map<String, Value> = obj
        .get("annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    annotations.retain(|k, _| !RECORD_KEYS.contains(&k.as_str()));
    for (k, v) in write.record.to_annotations() {
        annotations.insert(k, Value::String(v));
    }
    obj.insert("annotations".into(), Value::Object(annotations));

    if let Some(targets) = &write.traffic {
        let ours: BTreeSet<&str> = targets.iter().map(|t| t.revision.as_str()).collect();
        let mut traffic: Vec<Value> = targets
            .iter()
            .map(|t| {
                let mut v = json!({
                    "type": AllocationType::Revision.as_str(),
                    "revision": t.revision,
                    "percent": t.percent,
                });
                if let Some(tag) = &t.tag {
                    v["tag"] = json!(tag);
                }
                v
            })
            .collect();
        // Keep people's own tags on other revisions (they route nothing, so the split holds).
        let existing = obj
            .get("traffic")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for t in existing {
            let tag = t.get("tag").and_then(Value::as_str).unwrap_or_default();
            let rev = t
                .get("revision")
                .and_then(Value::as_str)
                .map(short_name)
                .unwrap_or_default();
            if tag.is_empty()
                || tag == CANDIDATE_TAG
                || tag == STABLE_TAG
                || rev.is_empty()
                || ours.contains(rev)
            {
                continue;
            }
            traffic.push(json!({
                "type": AllocationType::Revision.as_str(),
                "revision": rev,
                "tag": tag,
            }));
        }
        obj.insert("traffic".into(), Value::Array(traffic));
    }
    obj.insert("etag".into(), Value::String(read.version.etag.clone()));
    body
}

impl TrafficRouter for CloudRunRouter {
    type Version = Version;

    async fn observe(
        &self,
        target: &ServiceRef,
        deadline: Instant,
    ) -> Result<Observation<Version>, RouterError> {
        let f = self
            .run
            .get_service(target, deadline)
            .await
            .map_err(router_error)?;
        Ok(observed(target.clone(), f))
    }

    async fn list(
        &self,
        project: &str,
        region: &str,
        deadline: Instant,
    ) -> Result<Vec<Observation<Version>>, RouterError> {
        let all = self
            .run
            .list_services(project, region, deadline)
            .await
            .map_err(router_error)?;
        Ok(all
            .into_iter()
            .filter_map(|f| {
                let target = ServiceRef::from_resource_name(&f.service.name)?;
                Some(observed(target, f))
            })
            .collect())
    }

    /// The service resource exactly as listed or read: the write after it is built from it
    /// ([`patch_body`]), so it is all a write needs, and the etag inside it guards that write.
    fn carry(&self, read: &Observation<Version>) -> Option<Value> {
        Some((*read.version.body).clone())
    }

    /// A carried resource is taken only if it is a `Service` named `target` with an etag: a
    /// write without an etag would not be guarded at all.
    fn resume(&self, target: &ServiceRef, carried: Value) -> Option<Observation<Version>> {
        let service = Service::deserialize(&carried).ok()?;
        let named = ServiceRef::from_resource_name(&service.name)?;
        if named != *target || service.etag.is_empty() {
            return None;
        }
        Some(observed(
            named,
            Fetched {
                service,
                raw: carried,
            },
        ))
    }

    async fn apply(
        &self,
        read: &Observation<Version>,
        write: &Write,
        deadline: Instant,
    ) -> Result<Observation<Version>, RouterError> {
        let body = patch_body(read, write);
        let target = &read.observed.service;
        let op = self
            .run
            .patch_service(target, &body, deadline)
            .await
            .map_err(router_error)?;
        let done = self.run.wait(op, deadline).await.map_err(router_error)?;
        Ok(observed(target.clone(), done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Phase, Record, Target};

    fn fetched(v: Value) -> Fetched {
        Fetched {
            service: serde_json::from_value(v.clone()).unwrap(),
            raw: v,
        }
    }

    fn service() -> Value {
        json!({
            "name": "projects/p/locations/l/services/api",
            "etag": "\"abc\"",
            "labels": {"team": "payments"},
            "annotations": {"deploy.example.com/commit": "a017b5e", "cutover.dev/max-p99-ms": "500"},
            "template": {"revision": "api-00002-def", "containers": [{"image": "img:2"}]},
            "traffic": [
                {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "api-00001-abc", "percent": 100},
                {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "api-00000-old", "tag": "pr-7"}
            ],
            "trafficStatuses": [
                {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "api-00001-abc", "percent": 100},
                {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "api-00000-old", "tag": "pr-7", "uri": "https://pr-7---api-x-uc.a.run.app"}
            ],
            "latestReadyRevision": "projects/p/locations/l/services/api/revisions/api-00002-def"
        })
    }

    #[test]
    fn observation_reduces_the_service() {
        let o = observed(
            ServiceRef::checked("p", "l", "api").expect("valid ids"),
            fetched(service()),
        )
        .observed;
        assert_eq!(o.latest_ready.as_deref(), Some("api-00002-def"));
        assert_eq!(
            o.allocation,
            BTreeMap::from([("api-00001-abc".to_string(), 100)])
        );
        assert!(o.ready.contains("api-00001-abc") && o.ready.contains("api-00002-def"));
        assert_eq!(o.tag_urls["pr-7"], "https://pr-7---api-x-uc.a.run.app");
    }

    #[test]
    fn latest_traffic_resolves_to_the_latest_ready_revision() {
        let mut s = service();
        s["traffic"] = json!([{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]);
        let o = observed(
            ServiceRef::checked("p", "l", "api").expect("valid ids"),
            fetched(s),
        )
        .observed;
        assert_eq!(
            o.allocation,
            BTreeMap::from([("api-00002-def".to_string(), 100)])
        );
    }

    fn router() -> CloudRunRouter {
        let google = crate::gcp::Google::new(reqwest::Client::new(), crate::gcp::TokenSource::None);
        CloudRunRouter::new(RunClient::new(google, "http://127.0.0.1:9"))
    }

    #[test]
    fn a_carried_read_resumes_as_the_read_it_was() {
        let target = ServiceRef::checked("p", "l", "api").expect("valid ids");
        let listed = observed(target.clone(), fetched(service()));
        let r = router();
        let carried = r.carry(&listed).expect("Cloud Run carries its reads");
        assert_eq!(carried, service(), "the resource exactly as listed");
        let resumed = r.resume(&target, carried).expect("a read of api");
        assert_eq!(
            format!("{:?}", resumed.observed),
            format!("{:?}", listed.observed)
        );
        assert_eq!(resumed.version.etag, "\"abc\"");
        assert_eq!(*resumed.version.body, service());
    }

    #[test]
    fn a_carried_read_of_another_service_or_without_an_etag_is_not_resumed() {
        let target = ServiceRef::checked("p", "l", "api").expect("valid ids");
        let r = router();
        let other = ServiceRef::checked("p", "l", "web").expect("valid ids");
        assert!(r.resume(&other, service()).is_none(), "another service's");
        let elsewhere = ServiceRef::checked("p", "m", "api").expect("valid ids");
        assert!(
            r.resume(&elsewhere, service()).is_none(),
            "another region's"
        );
        let mut unguarded = service();
        unguarded.as_object_mut().unwrap().remove("etag");
        assert!(
            r.resume(&target, unguarded).is_none(),
            "no etag to guard a write"
        );
        assert!(r.resume(&target, json!("a string")).is_none());
        assert!(r.resume(&target, json!({"name": 7})).is_none());
    }

    #[test]
    fn the_write_changes_only_traffic_and_the_record() {
        let o = observed(
            ServiceRef::checked("p", "l", "api").expect("valid ids"),
            fetched(service()),
        );
        let record = Record {
            phase: Phase::Progressing,
            candidate: "api-00002-def".into(),
            stable: "api-00001-abc".into(),
            percent: 10,
            started: "2026-08-20T10:00:00Z".parse().unwrap(),
            step_started: "2026-08-20T10:00:00Z".parse().unwrap(),
            reason: "r".into(),
            rolled_back: vec![],
            history: Default::default(),
            build: None,
        };
        let write = Write {
            traffic: Some(vec![
                Target {
                    revision: "api-00001-abc".into(),
                    percent: 90,
                    tag: Some("stable".into()),
                },
                Target {
                    revision: "api-00002-def".into(),
                    percent: 10,
                    tag: Some("candidate".into()),
                },
            ]),
            record,
        };
        let body = patch_body(&o, &write);
        let before = service();
        assert_eq!(body["template"], before["template"], "template untouched");
        assert_eq!(body["labels"], before["labels"]);
        assert_eq!(body["etag"], "\"abc\"");
        assert_eq!(body["annotations"]["deploy.example.com/commit"], "a017b5e");
        assert_eq!(
            body["annotations"]["cutover.dev/max-p99-ms"], "500",
            "overrides are not ours to drop"
        );
        assert_eq!(body["annotations"]["cutover.dev/phase"], "progressing");
        let traffic = body["traffic"].as_array().unwrap();
        assert_eq!(
            traffic.len(),
            3,
            "the person's pr-7 tag is kept: {traffic:?}"
        );
        let sum: u64 = traffic
            .iter()
            .map(|t| t["percent"].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(sum, 100);
        assert_eq!(traffic[2]["tag"], "pr-7");
    }
}
