//! Each push's log lines carry the request's trace, so Cloud Logging groups a push's decision
//! with Cloud Run's request log entry for it.
//!
//! Cloud Run adds `X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=OPTIONS` (the span id decimal,
//! `o=1` when sampled) to every request it forwards, and also the W3C `traceparent`
//! (`00-TRACE_ID-SPAN_ID-FLAGS`, hex). Google's own logging samples read the former, and it is
//! the one Cloud Run's request log is written with, so it wins; `traceparent` is the fallback
//! (another front end, or a future platform that sends only the standard). Either becomes the
//! span [`PushSpan`] opens around the request, with the fields `crate::logs` turns into
//! `logging.googleapis.com/trace` (`projects/PROJECT/traces/TRACE_ID`), `…/spanId` (16 hex
//! digits) and `…/trace_sampled` on every line logged while handling it. Malformed headers are
//! ignored: no trace is better than a wrong one.

use axum::http::{HeaderMap, Request};
use tower_http::trace::MakeSpan;

use crate::logs::{SPAN_ID_FIELD, SPAN_SAMPLED_FIELD, SPAN_TRACE_FIELD};

/// A request's trace as Cloud Logging names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lower-case hex digits.
    pub trace_id: String,
    /// 16 lower-case hex digits.
    pub span_id: Option<String>,
    pub sampled: bool,
}

impl TraceContext {
    /// The trace of a request with these headers, if it has a well-formed one.
    pub fn from_headers(headers: &HeaderMap) -> Option<TraceContext> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        header("x-cloud-trace-context")
            .and_then(Self::cloud)
            .or_else(|| header("traceparent").and_then(Self::w3c))
    }

    /// `TRACE_ID[/SPAN_ID][;o=OPTIONS]`.
    fn cloud(v: &str) -> Option<TraceContext> {
        let (ids, options) = v.trim().split_once(';').unwrap_or((v.trim(), ""));
        let (trace, span) = ids.split_once('/').unwrap_or((ids, ""));
        let trace_id = hex_id(trace, 32)?;
        let span_id = span
            .parse::<u64>()
            .ok()
            .filter(|s| *s != 0)
            .map(|s| format!("{s:016x}"));
        Some(TraceContext {
            trace_id,
            span_id,
            sampled: options.trim() == "o=1",
        })
    }

    /// `VERSION-TRACE_ID-PARENT_ID-FLAGS`.
    fn w3c(v: &str) -> Option<TraceContext> {
        let mut parts = v.trim().split('-');
        let (Some(version), Some(trace), Some(span), Some(flags)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        if version.len() != 2 || version.eq_ignore_ascii_case("ff") {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(TraceContext {
            trace_id: hex_id(trace, 32)?,
            span_id: Some(hex_id(span, 16)?),
            sampled: flags & 1 == 1,
        })
    }
}

/// `s` when it is `len` hex digits and not all zero (the invalid id), lower-cased.
fn hex_id(s: &str, len: usize) -> Option<String> {
    let ok =
        s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()) && s.bytes().any(|b| b != b'0');
    ok.then(|| s.to_ascii_lowercase())
}

/// Opens the span every line of one request is logged in, with its trace when it has one.
#[derive(Clone, Debug)]
pub struct PushSpan {
    /// The project traces are named in (cutover's own: Cloud Run writes its request log there).
    pub project: String,
}

impl<B> MakeSpan<B> for PushSpan {
    fn make_span(&mut self, request: &Request<B>) -> tracing::Span {
        let Some(t) = TraceContext::from_headers(request.headers()) else {
            return tracing::info_span!("request", path = %request.uri().path());
        };
        let trace = format!("projects/{}/traces/{}", self.project, t.trace_id);
        tracing::info_span!(
            "request",
            path = %request.uri().path(),
            { SPAN_TRACE_FIELD } = trace.as_str(),
            { SPAN_ID_FIELD } = t.span_id.as_deref(),
            { SPAN_SAMPLED_FIELD } = t.sampled,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn cloud_runs_header_gives_trace_hex_span_and_sampling() {
        let t = TraceContext::from_headers(&headers(&[(
            "x-cloud-trace-context",
            "105445aa7843bc8bf206b12000100000/74;o=1",
        )]))
        .unwrap();
        assert_eq!(t.trace_id, "105445aa7843bc8bf206b12000100000");
        assert_eq!(t.span_id.as_deref(), Some("000000000000004a"));
        assert!(t.sampled);
        let unsampled = TraceContext::from_headers(&headers(&[(
            "x-cloud-trace-context",
            "105445aa7843bc8bf206b12000100000/74;o=0",
        )]))
        .unwrap();
        assert!(!unsampled.sampled);
    }

    #[test]
    fn traceparent_is_the_fallback_and_cloud_run_header_wins() {
        let w3c = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = TraceContext::from_headers(&headers(&[("traceparent", w3c)])).unwrap();
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert!(t.sampled);
        let both = TraceContext::from_headers(&headers(&[
            ("traceparent", w3c),
            (
                "x-cloud-trace-context",
                "105445aa7843bc8bf206b12000100000/1",
            ),
        ]))
        .unwrap();
        assert_eq!(both.trace_id, "105445aa7843bc8bf206b12000100000");
    }

    #[test]
    fn malformed_headers_give_no_trace() {
        for (k, v) in [
            ("x-cloud-trace-context", "not-hex/1;o=1"),
            (
                "x-cloud-trace-context",
                "00000000000000000000000000000000/1",
            ),
            ("x-cloud-trace-context", "105445aa\"/1"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            ),
            (
                "traceparent",
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        ] {
            assert_eq!(TraceContext::from_headers(&headers(&[(k, v)])), None, "{v}");
        }
    }
}
