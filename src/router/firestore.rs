//! Rollout records in Firestore, for the platforms that cannot carry them (see [`super::store`]).
//!
//! One document per target in one collection (`CUTOVER_FIRESTORE_COLLECTION`), named
//! `{platform}:{project}:{name}` (Firestore document ids may hold `:` but not `/`; platform and
//! name hold no `:`, so a domain-scoped project id cannot make two targets share a document).
//! The document's fields: `platform`, `project`, `name` (what a listing needs to rebuild the
//! target) and `record`, a map of the `cutover.dev/*` keys (and any policy overrides a person
//! put there), each a string.
//!
//! Firestore's REST API v1 (`docs/gcp-wire.md`): `GET {name}` reads a document (404
//! `NOT_FOUND`: no record yet); `GET {parent}/{collection}` lists them, a page at a time;
//! `POST {database}/documents:commit` with one `update` write replaces the whole document,
//! conditional on `currentDocument`: `{"updateTime": <as read>}` or `{"exists": false}`. The
//! document's `updateTime` is the record's version. A stale `updateTime` is refused with 400
//! `FAILED_PRECONDITION` and a create of an existing document with 409 `ALREADY_EXISTS`: both
//! are [`RouterError::Conflict`] here (someone else wrote since we read). The emulator
//! (`gcloud emulators firestore start`) answers the same, over plain HTTP. Every call goes
//! through `Google::call`, so it waits for the database project's Firestore bucket
//! (`CUTOVER_FIRESTORE_CALLS_PER_MINUTE`, `gcp::quota`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::RouterError;
use super::store::{RecordStore, Stored};
use crate::failure::ErrorKind;
use crate::gcp::{ApiError, Google};
use crate::ids::{ProjectId, ServiceName};
use crate::target::{Platform, ServiceRef};

/// Documents per page of a listing (Firestore's own maximum is 300).
const PAGE_SIZE: u32 = 300;

/// Records as Firestore documents, with `updateTime` preconditions.
#[derive(Clone)]
pub struct Firestore {
    google: Google,
    endpoint: String,
    /// `projects/{project}/databases/{database}`.
    database: String,
    collection: String,
}

impl Firestore {
    /// The records in `collection` of database `database` of `project`, reached at `endpoint`.
    pub fn new(
        google: Google,
        endpoint: &str,
        project: &str,
        database: &str,
        collection: &str,
    ) -> Self {
        Firestore {
            google,
            endpoint: endpoint.trim().trim_end_matches('/').to_string(),
            database: format!("projects/{project}/databases/{database}"),
            collection: collection.to_string(),
        }
    }

    /// The full resource name of `target`'s document.
    pub fn document_name(&self, target: &ServiceRef) -> String {
        format!(
            "{}/documents/{}/{}:{}:{}",
            self.database, self.collection, target.platform, target.project, target.name
        )
    }

    fn url(&self, name: &str) -> String {
        format!("{}/v1/{name}", self.endpoint)
    }
}

/// A `Document`, reduced to what cutover reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Document {
    name: String,
    fields: BTreeMap<String, Value>,
    update_time: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ListDocumentsResponse {
    documents: Vec<Document>,
    next_page_token: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct CommitResponse {
    write_results: Vec<WriteResult>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct WriteResult {
    update_time: String,
}

/// A Firestore failure as a router error: a failed precondition is a conflict.
fn store_error(e: ApiError) -> RouterError {
    let kind = match &e {
        ApiError::Status { status, .. }
            if status == "FAILED_PRECONDITION" || status == "ALREADY_EXISTS" =>
        {
            ErrorKind::Conflict
        }
        e => e.kind(),
    };
    RouterError::new(kind, e)
}

/// A `Value` as text: strings as they are; numbers and booleans a person typed in the console
/// as they print (an override such as `max-p99-ms` may be entered as a number).
fn text(v: &Value) -> Option<String> {
    let obj = v.as_object()?;
    if let Some(s) = obj.get("stringValue").and_then(Value::as_str) {
        return Some(s.to_string());
    }
    if let Some(s) = obj.get("integerValue").and_then(Value::as_str) {
        return Some(s.to_string());
    }
    for key in ["doubleValue", "booleanValue"] {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            return Some(v.to_string());
        }
    }
    None
}

impl Document {
    fn record(&self) -> BTreeMap<String, String> {
        let fields = self
            .fields
            .get("record")
            .and_then(|r| r.pointer("/mapValue/fields"))
            .and_then(Value::as_object);
        fields
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), text(v)?)))
            .collect()
    }

    fn stored(&self) -> Stored {
        Stored {
            annotations: self.record(),
            version: Some(self.update_time.clone()),
        }
    }

    /// The target a listed document is about, when its fields name a valid one.
    fn target(&self) -> Option<ServiceRef> {
        let field = |k: &str| self.fields.get(k).and_then(text);
        let platform = Platform::parse(&field("platform")?)?;
        let project = ProjectId::parse(&field("project")?).ok()?;
        let name = ServiceName::parse(&field("name")?).ok()?;
        if platform.is_regional() {
            return None;
        }
        Some(ServiceRef::global(platform, project, name))
    }
}

impl RecordStore for Firestore {
    async fn read(&self, target: &ServiceRef, deadline: Instant) -> Result<Stored, RouterError> {
        let url = self.url(&self.document_name(target));
        let doc: Result<Document, ApiError> = self
            .google
            .call("GET", &url, |c| c.get(&url), deadline)
            .await;
        match doc {
            Ok(d) => Ok(d.stored()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Stored::default()),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn list(
        &self,
        project: &str,
        platform: Platform,
        deadline: Instant,
    ) -> Result<Vec<(ServiceRef, Stored)>, RouterError> {
        let base = self.url(&format!("{}/documents/{}", self.database, self.collection));
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let mut query = vec![("pageSize", PAGE_SIZE.to_string())];
            if !token.is_empty() {
                query.push(("pageToken", token.clone()));
            }
            let page: ListDocumentsResponse = self
                .google
                .call("GET", &base, |c| c.get(&base).query(&query), deadline)
                .await
                .map_err(store_error)?;
            for doc in &page.documents {
                match doc.target() {
                    Some(t) if t.platform == platform && t.project.as_str() == project => {
                        all.push((t, doc.stored()));
                    }
                    Some(_) => {}
                    None => {
                        tracing::warn!(document = %doc.name, "a record document that names no target; ignored")
                    }
                }
            }
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            token = page.next_page_token;
        }
    }

    async fn write(
        &self,
        target: &ServiceRef,
        annotations: &BTreeMap<String, String>,
        expected: Option<&str>,
        deadline: Instant,
    ) -> Result<Stored, RouterError> {
        let string = |s: &str| json!({ "stringValue": s });
        let record: serde_json::Map<String, Value> = annotations
            .iter()
            .map(|(k, v)| (k.clone(), string(v)))
            .collect();
        let precondition = match expected {
            Some(t) => json!({ "updateTime": t }),
            None => json!({ "exists": false }),
        };
        let body = json!({
            "writes": [{
                "update": {
                    "name": self.document_name(target),
                    "fields": {
                        "platform": string(target.platform.as_str()),
                        "project": string(target.project.as_str()),
                        "name": string(target.name.as_str()),
                        "record": { "mapValue": { "fields": record } },
                    },
                },
                "currentDocument": precondition,
            }],
        });
        let url = self.url(&format!("{}/documents:commit", self.database));
        let done: CommitResponse = self
            .google
            .call("POST", &url, |c| c.post(&url).json(&body), deadline)
            .await
            .map_err(store_error)?;
        let version = done
            .write_results
            .into_iter()
            .next()
            .map(|w| w.update_time)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                RouterError::new(
                    ErrorKind::Transient,
                    format!("{target}: Firestore's commit answered without an update time"),
                )
            })?;
        Ok(Stored {
            annotations: annotations.clone(),
            version: Some(version),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_reads_back_as_the_record_and_its_target() {
        let doc: Document = serde_json::from_value(json!({
            "name": "projects/ops/databases/(default)/documents/cutover-rollouts/app-engine:acme:web",
            "fields": {
                "platform": {"stringValue": "app-engine"},
                "project": {"stringValue": "acme"},
                "name": {"stringValue": "web"},
                "record": {"mapValue": {"fields": {
                    "cutover.dev/phase": {"stringValue": "smoke"},
                    "cutover.dev/max-p99-ms": {"integerValue": "500"}
                }}}
            },
            "createTime": "2026-12-05T03:02:17.810834Z",
            "updateTime": "2026-12-05T03:02:17.810834Z"
        }))
        .unwrap();
        let stored = doc.stored();
        assert_eq!(
            stored.version.as_deref(),
            Some("2026-12-05T03:02:17.810834Z")
        );
        assert_eq!(stored.annotations["cutover.dev/phase"], "smoke");
        assert_eq!(stored.annotations["cutover.dev/max-p99-ms"], "500");
        let t = doc.target().unwrap();
        assert_eq!(t.to_string(), "app-engine:acme/web");
    }

    #[test]
    fn failed_preconditions_are_conflicts() {
        let status = |http, status: &str| ApiError::Status {
            method: "POST",
            path: "p".into(),
            http,
            status: status.into(),
            message: "m".into(),
        };
        assert_eq!(
            store_error(status(400, "FAILED_PRECONDITION")).kind(),
            ErrorKind::Conflict
        );
        assert_eq!(
            store_error(status(409, "ALREADY_EXISTS")).kind(),
            ErrorKind::Conflict
        );
        assert_eq!(
            store_error(status(400, "INVALID_ARGUMENT")).kind(),
            ErrorKind::Permanent
        );
        assert_eq!(
            store_error(status(503, "UNAVAILABLE")).kind(),
            ErrorKind::Transient
        );
    }

    /// Counted at the API, per 60-second window: no minute holds more of the store's calls than
    /// the Firestore budget (`CUTOVER_FIRESTORE_CALLS_PER_MINUTE`), and every call gets through.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_stay_within_the_firestore_budget_per_window() {
        use std::sync::{Arc, Mutex};

        use jiff::Timestamp;

        use crate::clock::Clock;
        use crate::gcp::quota::Limits;
        use crate::gcp::quota::platforms::{at_most_per_window, limited, spread};
        use crate::router::stub::Stub;

        let clock = Clock::manual("2026-08-20T10:00:00Z".parse().unwrap());
        let seen_at: Arc<Mutex<Vec<Timestamp>>> = Arc::default();
        let (c, log) = (clock.clone(), seen_at.clone());
        let missing =
            json!({"error": {"code": 404, "message": "no such document", "status": "NOT_FOUND"}});
        let stub = Stub::serve(move |_, _| {
            log.lock().unwrap().push(c.now());
            (404, missing.clone())
        })
        .await;
        let limit = 2;
        let (quota, google) = limited(
            Limits {
                firestore_calls: limit,
                ..Limits::UNLIMITED
            },
            &clock,
        );
        let store = Firestore::new(google, &stub.base, "acme-prod", "(default)", "rollouts");
        let calls = async move {
            let web = ServiceRef::global(
                Platform::AppEngine,
                ProjectId::parse("acme-prod").unwrap(),
                ServiceName::parse("web").unwrap(),
            );
            let far = Instant::now() + std::time::Duration::from_secs(60);
            let reads = (0..6).map(|_| store.read(&web, far));
            futures::future::join_all(reads).await
        };
        let arrived = || seen_at.lock().unwrap().len() as u64;
        for r in spread(&clock, &quota, calls, arrived).await {
            r.expect("a missing record reads as none");
        }
        let at = seen_at.lock().unwrap().clone();
        assert_eq!(at.len(), 6);
        at_most_per_window(&at, limit as usize);
    }
}
