//! Log lines as Cloud Logging reads them: one JSON object per line on stdout, which Cloud Run's
//! logging agent turns into a `jsonPayload` with its special fields lifted into the entry.
//!
//! Why a layer of our own rather than `tracing-stackdriver` or tracing's `valuable` support:
//! - the decision record must be queryable, so its numbers must stay numbers. The crate cutover
//!   used before wrote every `f64` field through `Debug`, as a string (`"errorRate":"0.0"`), and
//!   had no way to nest an object (`statistics` came out as one escaped string);
//! - `valuable` would nest objects, but it is behind `--cfg tracing_unstable`: every build of the
//!   crate (a fresh clone, CI, the fuzz workspace, the Docker build) would need that flag in a
//!   `.cargo/config.toml` or `RUSTFLAGS`, and an unstable tracing API can change under a patch
//!   release. For one nested field that is a poor trade;
//! - what Cloud Logging needs is small: `severity`, `message`, `time` (RFC 3339), and the
//!   request's trace (`logging.googleapis.com/trace`, `…/spanId`, `…/trace_sampled`) so the
//!   console groups a push's lines with its request. About a hundred lines here, no unstable
//!   API, and a test that parses the line as Cloud Logging would.
//!
//! The rules, for every event:
//! - fields keep the name they are logged with (`error_rate`, `message_id`), the same names as
//!   the decision record's JSON in answers and on `/status.json`;
//! - integers, floats and booleans are JSON numbers and booleans (a float that is not finite is
//!   written as its text, since JSON has no NaN); everything else is text;
//! - a field named `NAME_json` holds JSON text and is written as the value it encodes, under
//!   `NAME` (text that does not parse stays text, under the same name: nothing is dropped);
//!   `fields_json`, an object, puts its members (but nulls) at the top of the line: that is how a
//!   decision is logged, its record serialised once (`reconcile::DecisionRecord`), so the
//!   `jsonPayload` has the same fields and types as the record in answers and `/status.json`;
//! - the trace comes from the nearest enclosing span that carries `cloud_trace` (the full
//!   `projects/P/traces/T`), with `cloud_span_id` and `cloud_trace_sampled` beside it
//!   (`server::trace` opens that span for each push, from Cloud Run's trace headers).

use std::io::Write;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Cloud Logging's field for the trace a line belongs to (`projects/P/traces/T`).
pub const TRACE: &str = "logging.googleapis.com/trace";
/// The span within that trace (16 hex digits).
pub const SPAN_ID: &str = "logging.googleapis.com/spanId";
/// Whether the trace was sampled.
pub const TRACE_SAMPLED: &str = "logging.googleapis.com/trace_sampled";

/// Span fields that carry a request's trace (see [`CloudTrace`]).
pub const SPAN_TRACE_FIELD: &str = "cloud_trace";
pub const SPAN_ID_FIELD: &str = "cloud_span_id";
pub const SPAN_SAMPLED_FIELD: &str = "cloud_trace_sampled";

/// A field `fields_json` holding a JSON object puts its members at the top of the line.
const FLATTEN: &str = "fields";

/// The trace a span's lines belong to, kept in the span's extensions.
#[derive(Clone, Debug, Default, PartialEq)]
struct CloudTrace {
    trace: String,
    span_id: Option<String>,
    sampled: bool,
}

impl Visit for CloudTrace {
    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == SPAN_SAMPLED_FIELD {
            self.sampled = value;
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            SPAN_TRACE_FIELD => self.trace = value.to_string(),
            SPAN_ID_FIELD => self.span_id = Some(value.to_string()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

/// The JSON line layer; `writer` is stdout in production, a buffer in tests.
pub struct CloudLogging<W> {
    writer: W,
}

impl<W> CloudLogging<W> {
    pub fn new(writer: W) -> Self {
        CloudLogging { writer }
    }
}

/// Collects an event's fields as JSON values.
struct Fields(Map<String, Value>);

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        self.0.insert(field.name().to_string(), value);
    }
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let v = serde_json::Number::from_f64(value)
            .map_or_else(|| Value::String(value.to_string()), Value::Number);
        self.put(field, v);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name().strip_suffix("_json") {
            Some(FLATTEN) => match serde_json::from_str(value) {
                Ok(Value::Object(members)) => self
                    .0
                    .extend(members.into_iter().filter(|(_, v)| !v.is_null())),
                _ => self.put(field, value.into()),
            },
            Some(name) => {
                let v = serde_json::from_str(value).unwrap_or_else(|_| value.into());
                self.0.insert(name.to_string(), v);
            }
            None => self.put(field, value.into()),
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        _ => "DEBUG",
    }
}

impl<S, W> Layer<S> for CloudLogging<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut trace = CloudTrace::default();
        attrs.record(&mut trace);
        if !trace.trace.is_empty()
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(trace);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        let mut line = fields.0;
        let meta = event.metadata();
        line.insert("severity".into(), severity(meta.level()).into());
        line.insert("time".into(), jiff::Timestamp::now().to_string().into());
        line.insert("target".into(), meta.target().into());
        line.entry("message").or_insert_with(|| "".into());
        let trace = ctx.event_scope(event).and_then(|scope| {
            scope
                .into_iter()
                .find_map(|span| span.extensions().get::<CloudTrace>().cloned())
        });
        if let Some(t) = trace {
            line.insert(TRACE.into(), t.trace.into());
            if let Some(span_id) = t.span_id {
                line.insert(SPAN_ID.into(), span_id.into());
            }
            line.insert(TRACE_SAMPLED.into(), t.sampled.into());
        }
        let Ok(mut text) = serde_json::to_vec(&Value::Object(line)) else {
            return;
        };
        text.push(b'\n');
        // One write per line, so that lines of concurrent requests never interleave.
        let _ = self.writer.make_writer().write_all(&text);
    }
}

/// Lines kept in memory instead of stdout, parsed on demand: what a test (or a tool that wants
/// to read cutover's log lines back) writes to with `CloudLogging::new(memory.clone())`.
#[derive(Clone, Default)]
pub struct Memory(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Memory {
    /// Every line so far, parsed as JSON (a line that is not JSON is a bug: it panics, saying so).
    pub fn lines(&self) -> Vec<Value> {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
}

impl Write for Memory {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Memory {
    type Writer = Memory;
    fn make_writer(&'a self) -> Memory {
        self.clone()
    }
}

#[cfg(test)]
mod tests;
