//! Fuzz target: push authentication, the check every push request passes before anything else.
//!
//! A local JWKS server publishes cutover's test key; the verifier is configured for one base
//! audience and one push service account, and checks tokens for `/pubsub/builds` (audience
//! `<base>/builds`). The first input byte picks the attack:
//! * `0`: the rest is the whole `Authorization` header value;
//! * `1`: the rest is `header JSON \n claims JSON \n signature bytes`, assembled into a JWT
//!   (alg confusion, odd kids, `crit`, giant or broken segments) — never validly signed;
//! * otherwise: the rest is a claims JSON object that *is* signed with the test key, so the
//!   claim checks themselves are fuzzed.
//!
//! Never panics; nothing without a valid signature is accepted; a validly signed token is
//! accepted only if Google's issuer, the endpoint's exact audience, the allowed and verified
//! email, a subject, the time window (30 s leeway) and a lifetime of at most an hour (plus the
//! leeway, from `iat` and from now) all hold.
#![no_main]

use std::io::{Read, Write};
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cutover::events::auth::PushEndpoint;
use cutover::events::{GoogleVerifier, GoogleVerifierConfig, PushAuth};
use cutover_fakes::oidc as testing;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

/// The base audience; tokens for `/pubsub/builds` carry `<base>/builds`.
const AUDIENCE: &str = "https://cutover.example.com/pubsub";
const ACCOUNT: &str = "pubsub-push@acme-prod.iam.gserviceaccount.com";
const NOW: i64 = 1_787_220_000;

struct Harness {
    rt: tokio::runtime::Runtime,
    auth: PushAuth,
}

/// Serves the test JWKS on a loopback port, forever, from a plain thread.
fn jwks_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = listener.local_addr().expect("an address");
    let body = testing::jwks_json().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: public, max-age=86400\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(answer.as_bytes());
        }
    });
    format!("http://{addr}/oauth2/v3/certs")
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let cfg = GoogleVerifierConfig {
            jwks_url: jwks_server(),
            ..GoogleVerifierConfig::new(AUDIENCE, vec![ACCOUNT.to_string()])
        };
        let auth = PushAuth::Google(GoogleVerifier::new(cfg).expect("an HTTP client"));
        Harness { rt, auth }
    })
}

fn check(header: &str) -> bool {
    let h = harness();
    let now = jiff::Timestamp::from_second(NOW).expect("a time");
    h.rt.block_on(h.auth.check(Some(header), PushEndpoint::Builds, now))
        .is_ok()
}

fn number(v: Option<&Value>) -> Option<i64> {
    let n = v?.as_number()?;
    n.as_i64()
        .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
}

/// What a correct verifier accepts, given that the signature is valid.
fn acceptable(c: &Map<String, Value>) -> bool {
    let s = |k: &str| c.get(k).and_then(Value::as_str);
    let issuer = matches!(
        s("iss"),
        Some("accounts.google.com" | "https://accounts.google.com")
    );
    let audience = s("aud") == Some(format!("{AUDIENCE}/builds").as_str());
    let email = s("email").is_some_and(|e| e.eq_ignore_ascii_case(ACCOUNT));
    let verified = match c.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(v)) => v.eq_ignore_ascii_case("true"),
        _ => false,
    };
    let alive = number(c.get("exp")).is_some_and(|exp| NOW < exp.saturating_add(30));
    let issued = number(c.get("iat")).is_some_and(|iat| iat <= NOW + 30);
    let longest = 3600 + 30;
    let short_lived = match (number(c.get("iat")), number(c.get("exp"))) {
        (Some(iat), Some(exp)) => {
            exp.saturating_sub(iat) <= longest && exp.saturating_sub(NOW) <= longest
        }
        _ => false,
    };
    let started = match c.get("nbf") {
        None | Some(Value::Null) => true,
        v => number(v).is_some_and(|nbf| nbf <= NOW + 30),
    };
    issuer
        && audience
        && email
        && verified
        && alive
        && issued
        && short_lived
        && started
        && s("sub").is_some()
}

fuzz_target!(|input: &[u8]| {
    let Some((mode, rest)) = input.split_first() else {
        return;
    };
    match mode {
        0 => {
            let header = String::from_utf8_lossy(rest);
            assert!(
                !check(&header),
                "an unsigned header was accepted: {header:?}"
            );
        }
        1 => {
            let mut parts = rest.splitn(3, |b| *b == b'\n');
            let head = parts.next().unwrap_or_default();
            let claims = parts.next().unwrap_or_default();
            let signature = parts.next().unwrap_or_default();
            let token = format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(head),
                URL_SAFE_NO_PAD.encode(claims),
                URL_SAFE_NO_PAD.encode(signature)
            );
            assert!(
                !check(&testing::bearer(&token)),
                "a forged token was accepted"
            );
        }
        _ => {
            let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(rest) else {
                return;
            };
            let token = testing::sign(&Value::Object(claims.clone()));
            let accepted = check(&testing::bearer(&token));
            assert_eq!(
                accepted,
                acceptable(&claims),
                "signed claims {claims:?} were {}",
                if accepted { "accepted" } else { "refused" }
            );
        }
    }
});
