//! The googleapis conventions every fake in `sim` shares (docs/gcp-wire.md §0 and §8), kept in one
//! place so the Run, Monitoring and metadata fakes cannot drift apart: the `google.rpc.Status`
//! error envelope, the HTML 404 that googleapis front ends answer for unknown paths, proto3-JSON
//! scalars (int64 as strings, RFC 3339 timestamps, enums sent as names *or* numbers) and opaque
//! page tokens.

use axum::{
    Json,
    http::{StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jiff::Timestamp;
use serde_json::{Value, json};

/// The `google.rpc.Code` name that googleapis pairs with an HTTP status (code.proto mapping).
pub(crate) fn status_name(http: u16) -> &'static str {
    match http {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

/// An error answered as `{"error":{"code","message","status","details"?}}`.
#[derive(Debug)]
pub(crate) struct RpcError {
    http: u16,
    status: &'static str,
    message: String,
    details: Vec<Value>,
}

impl RpcError {
    /// An error with the canonical status name for `http`.
    pub(crate) fn new(http: u16, message: impl Into<String>) -> Self {
        RpcError {
            http,
            status: status_name(http),
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        RpcError::new(400, message)
    }

    /// 400 INVALID_ARGUMENT with a `google.rpc.BadRequest` naming the offending field.
    pub(crate) fn bad_field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        RpcError::new(400, message.clone()).with_detail(json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": field, "description": message}],
        }))
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        RpcError::new(404, message)
    }

    pub(crate) fn aborted(message: impl Into<String>) -> Self {
        RpcError::new(409, message)
    }

    /// 409 with `ALREADY_EXISTS` (the other 409 of code.proto).
    pub(crate) fn already_exists(message: impl Into<String>) -> Self {
        RpcError {
            status: "ALREADY_EXISTS",
            ..RpcError::new(409, message)
        }
    }

    /// An error injected by a test through the fault handle: realistic messages per status.
    pub(crate) fn injected(http: u16, api: &str) -> Self {
        let http = if StatusCode::from_u16(http).is_ok() {
            http
        } else {
            500
        };
        match http {
            429 => RpcError::new(
                429,
                format!(
                    "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per \
                     minute' of service '{api}' for consumer 'project_number:123456789012'."
                ),
            )
            .with_detail(json!({
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "RATE_LIMIT_EXCEEDED",
                "domain": "googleapis.com",
                "metadata": {"service": api, "consumer": "projects/123456789012"},
            })),
            503 => RpcError::new(503, "The service is currently unavailable."),
            500 => RpcError::new(500, "Internal error encountered."),
            504 => RpcError::new(504, "The request timed out. Please try again."),
            other => RpcError::new(other, format!("Injected {other} from the {api} fake.")),
        }
    }

    pub(crate) fn with_detail(mut self, detail: Value) -> Self {
        self.details.push(detail);
        self
    }
}

impl IntoResponse for RpcError {
    fn into_response(self) -> Response {
        let mut error = json!({
            "code": self.http,
            "message": self.message,
            "status": self.status,
        });
        if !self.details.is_empty() {
            error["details"] = Value::Array(self.details);
        }
        let status = StatusCode::from_u16(self.http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(json!({ "error": error }))).into_response()
    }
}

/// What a googleapis front end answers for a path no API serves: an HTML page, not JSON.
pub(crate) fn html_not_found(path: &str) -> Response {
    let escaped: String = path
        .chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            c => c.to_string(),
        })
        .collect();
    let body = format!(
        "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  \
         <title>Error 404 (Not Found)!!1</title>\n  \
         <p><b>404.</b> <ins>That\u{2019}s an error.</ins>\n  \
         <p>The requested URL <code>{escaped}</code> was not found on this server.  \
         <ins>That\u{2019}s all we know.</ins>\n"
    );
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
        body,
    )
        .into_response()
}

/// A proto3-JSON int64: a string.
pub(crate) fn int64(n: u64) -> Value {
    Value::String(n.to_string())
}

/// A `google.protobuf.Timestamp` with microseconds, as Cloud Run writes them.
pub(crate) fn micros(t: Timestamp) -> String {
    format!("{t:.6}")
}

/// The decoded query string, repeated keys kept in order.
pub(crate) fn query_pairs(uri: &Uri) -> Result<Vec<(String, String)>, RpcError> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| RpcError::invalid_argument(format!("Invalid query string: {e}")))
}

/// The last value of query parameter `key`.
pub(crate) fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A proto3-JSON bool query parameter (`true`/`false`/`1`/`0`; absent is false).
pub(crate) fn bool_param(pairs: &[(String, String)], key: &str) -> Result<bool, RpcError> {
    match param(pairs, key) {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(RpcError::invalid_argument(format!(
            "Invalid value for bool field \"{key}\": \"{other}\""
        ))),
    }
}

/// An int32 query parameter such as `pageSize` (absent or empty is 0).
pub(crate) fn int_param(pairs: &[(String, String)], key: &str) -> Result<i64, RpcError> {
    match param(pairs, key) {
        None | Some("") => Ok(0),
        Some(v) => v
            .parse::<i32>()
            .map(i64::from)
            .map_err(|_| RpcError::invalid_argument(format!("Invalid value at '{key}': \"{v}\""))),
    }
}

/// An enum value sent either as its name or as its number (the official SDKs send numbers).
/// Returns the number, or `None` if it is neither a known name nor a known number.
pub(crate) fn decode_enum(value: &Value, table: &[(&str, i64)]) -> Option<i64> {
    match value {
        Value::String(name) => table.iter().find(|(n, _)| n == name).map(|(_, v)| *v),
        Value::Number(n) => {
            let n = n.as_i64()?;
            table.iter().find(|(_, v)| *v == n).map(|(_, v)| *v)
        }
        _ => None,
    }
}

/// The name of enum number `n` in `table`.
pub(crate) fn enum_name(table: &[(&'static str, i64)], n: i64) -> Option<&'static str> {
    table.iter().find(|(_, v)| *v == n).map(|(name, _)| *name)
}

/// An opaque page token for "continue after `offset` items".
pub(crate) fn page_token(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("after:{offset}"))
}

/// The offset a page token stands for (absent or empty token: 0).
pub(crate) fn page_offset(token: Option<&str>) -> Result<usize, RpcError> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(0);
    };
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix("after:")?.parse().ok())
        .ok_or_else(|| RpcError::invalid_argument("The page token is invalid."))
}

/// A random version-4 UUID string.
pub(crate) fn uuid4(rng: &mut fastrand::Rng) -> String {
    let mut b = rng.u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// An error of the Compute Engine API, in its own shape (docs/gcp-wire.md §12.5):
/// `{"error": {"code", "message", "errors": [{"message", "domain": "global", "reason"}]}}`, no
/// `status`.
#[derive(Debug)]
pub(crate) struct ComputeError {
    http: u16,
    reason: &'static str,
    message: String,
}

impl ComputeError {
    pub(crate) fn new(http: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ComputeError {
            http,
            reason,
            message: message.into(),
        }
    }
}

impl IntoResponse for ComputeError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json!({"error": {
            "code": self.http,
            "message": self.message,
            "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
        }});
        (status, Json(body)).into_response()
    }
}

/// A Compute error answer.
pub(crate) fn compute_error(http: u16, reason: &'static str, message: &str) -> Response {
    ComputeError::new(http, reason, message).into_response()
}

/// An injected Compute failure with the reason Compute gives for that status.
pub(crate) fn compute_injected(http: u16) -> Response {
    match http {
        429 => compute_error(429, "rateLimitExceeded", "Rate Limit Exceeded"),
        500 => compute_error(
            500,
            "backendError",
            "Internal error. Please try again or contact Google Support.",
        ),
        503 => compute_error(503, "backendError", "The service is currently unavailable."),
        other => compute_error(
            other,
            "backendError",
            &format!("Injected {other} from the compute.googleapis.com fake."),
        ),
    }
}

/// What a smoke check of a revision's or version's URL gets: `status` with a short body.
pub(crate) fn smoke_answer(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = if status.is_success() {
        "ok"
    } else {
        status.canonical_reason().unwrap_or("error")
    };
    (status, body).into_response()
}
