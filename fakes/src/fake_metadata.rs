//! Fake metadata server (docs/gcp-wire.md §7): where cutover, running on Cloud Run, gets its access
//! token, project and region. Point `GCE_METADATA_HOST` at
//! [`FakeGcp::metadata_host`](super::FakeGcp::metadata_host) and the official auth crate talks to
//! this instead.
//!
//! Like the real one it insists on `Metadata-Flavor: Google` (403 otherwise) and stamps the same
//! header on every answer; tokens are `fake-token-N`, counted so tests can see caching.

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;

use super::world::{Shared, lock};

/// What the metadata server tells about "this" instance.
#[derive(Clone, Debug)]
pub(crate) struct MetadataConfig {
    pub(crate) project_id: String,
    pub(crate) numeric_project_id: String,
    pub(crate) region: String,
    /// The runtime service account (also recorded as `lastModifier` of API writes).
    pub(crate) email: String,
}

impl MetadataConfig {
    pub(crate) fn new(project_id: &str, region: &str) -> Self {
        MetadataConfig {
            project_id: project_id.to_string(),
            numeric_project_id: "123456789012".to_string(),
            region: region.to_string(),
            email: format!("cutover@{project_id}.iam.gserviceaccount.com"),
        }
    }
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig::new("acme-prod", "us-central1")
    }
}

const FLAVOR: &str = "Metadata-Flavor";

pub(crate) fn router() -> Router<Shared> {
    Router::new()
        .route("/", get(root))
        .route("/computeMetadata/v1/", get(directory))
        .route("/computeMetadata/v1/{*path}", get(value))
}

fn flavored(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (
        status,
        [
            (FLAVOR, "Google"),
            (header::CONTENT_TYPE.as_str(), content_type),
        ],
        body,
    )
        .into_response()
}

fn text(body: String) -> Response {
    flavored(StatusCode::OK, "application/text", body)
}

/// The real server answers its root without the header: that is how clients detect it.
async fn root() -> Response {
    text("computeMetadata/\n".to_string())
}

fn refuse_unflavored(headers: &HeaderMap) -> Option<Response> {
    let ok = headers
        .get(FLAVOR)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "Google");
    (!ok).then(|| {
        flavored(
            StatusCode::FORBIDDEN,
            "text/plain; charset=utf-8",
            "Missing required header \"Metadata-Flavor\": \"Google\"\n".to_string(),
        )
    })
}

async fn directory(headers: HeaderMap) -> Response {
    refuse_unflavored(&headers)
        .unwrap_or_else(|| text("instance/\noslogin/\nproject/\nuniverse/\n".to_string()))
}

async fn value(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(path): Path<String>,
) -> Response {
    if let Some(refusal) = refuse_unflavored(&headers) {
        return refusal;
    }
    let mut w = lock(&shared);
    let m = w.metadata.clone();
    let answer = match path.trim_end_matches('/') {
        "project/project-id" => m.project_id,
        "project/numeric-project-id" => m.numeric_project_id,
        "instance/region" => format!("projects/{}/regions/{}", m.numeric_project_id, m.region),
        "instance/zone" => format!("projects/{}/zones/{}-1", m.numeric_project_id, m.region),
        "instance/id" => "00bf4bf02d5bf1b5bf6e5eef4b2b6ec4d5a1bd0c".to_string(),
        "instance/service-accounts/default/email" => m.email,
        "universe/universe-domain" => "googleapis.com".to_string(),
        "instance/service-accounts/default/token" => {
            w.tokens_issued += 1;
            let token = json!({
                "access_token": format!("fake-token-{}", w.tokens_issued),
                "expires_in": 3599,
                "token_type": "Bearer",
            });
            return flavored(StatusCode::OK, "application/json", token.to_string());
        }
        _ => {
            return flavored(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "Not Found\n".to_string(),
            );
        }
    };
    text(answer)
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;

    async fn get(fake: &crate::FakeGcp, path: &str, flavor: bool) -> (u16, Option<String>, String) {
        let mut request = http().get(format!("http://{}{path}", fake.metadata_host()));
        if flavor {
            request = request.header("Metadata-Flavor", "Google");
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let header = response
            .headers()
            .get("metadata-flavor")
            .map(|v| v.to_str().unwrap().to_string());
        (status, header, response.text().await.unwrap())
    }

    /// Without `Metadata-Flavor: Google` the server refuses, and still says it is one.
    #[tokio::test]
    async fn the_flavor_header_is_required() {
        let (fake, _clock) = fake_with_service().await;
        let (status, header, _) = get(
            &fake,
            "/computeMetadata/v1/instance/service-accounts/default/token",
            false,
        )
        .await;
        assert_eq!((status, header.as_deref()), (403, Some("Google")));
        assert_eq!(fake.tokens_issued(), 0);
        let (status, header, body) = get(&fake, "/", false).await;
        assert_eq!((status, header.as_deref()), (200, Some("Google")));
        assert_eq!(body, "computeMetadata/\n");
        assert_eq!(get(&fake, "/computeMetadata/v1/", true).await.0, 200);
        assert_eq!(get(&fake, "/computeMetadata/v1/", false).await.0, 403);
    }

    /// Tokens are numbered and counted; project, region, email and universe are served.
    #[tokio::test]
    async fn tokens_and_identity() {
        let (fake, _clock) = fake_with_service().await;
        fake.set_metadata("acme-prod", "europe-west1");
        for n in 1..=2 {
            let (status, header, body) = get(
                &fake,
                "/computeMetadata/v1/instance/service-accounts/default/token?scopes=x",
                true,
            )
            .await;
            assert_eq!((status, header.as_deref()), (200, Some("Google")));
            let token: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                token,
                serde_json::json!({"access_token": format!("fake-token-{n}"), "expires_in": 3599, "token_type": "Bearer"})
            );
        }
        assert_eq!(fake.tokens_issued(), 2);
        let cases = [
            ("/computeMetadata/v1/project/project-id", "acme-prod"),
            (
                "/computeMetadata/v1/project/numeric-project-id",
                "123456789012",
            ),
            (
                "/computeMetadata/v1/instance/region",
                "projects/123456789012/regions/europe-west1",
            ),
            (
                "/computeMetadata/v1/instance/service-accounts/default/email",
                "cutover@acme-prod.iam.gserviceaccount.com",
            ),
            (
                "/computeMetadata/v1/universe/universe-domain",
                "googleapis.com",
            ),
        ];
        for (path, want) in cases {
            let (status, _, body) = get(&fake, path, true).await;
            assert_eq!((status, body.as_str()), (200, want), "{path}");
        }
        assert_eq!(
            get(&fake, "/computeMetadata/v1/instance/nothing", true)
                .await
                .0,
            404
        );
    }
}
