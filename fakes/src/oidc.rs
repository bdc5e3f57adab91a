//! Test-only signing material for push authentication: a fixed RSA key, its JWKS and helpers
//! that mint Google-shaped OIDC tokens.
//!
//! cutover's tests, the pusher and the demo need tokens that cutover's push verifier accepts
//! without talking to Google. They point the
//! verifier's `jwks_url` at a local server answering [`jwks_json`] and sign with [`sign`].
//!
//! **The keys below are public and protect nothing.** They were generated for cutover's tests
//! and must never be trusted by a deployed verifier: a production configuration points at
//! Google's key set, which never contains them.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// Key id of [`TEST_ONLY_PRIVATE_KEY_PEM`] in [`jwks_json`] and in tokens from [`sign`].
pub const KID: &str = "cutover-test-key-1";

/// Numeric id used as `sub` and `azp` by [`google_claims`] (the shape of a service account's
/// unique id).
pub const TEST_SUBJECT: &str = "104215935731958802174";

/// TEST ONLY: a 2048-bit RSA private key (PKCS#1 PEM) generated for cutover's tests with
/// `openssl genrsa -traditional 2048`. It is published in this source file, so it protects
/// nothing; never configure a verifier to trust it outside tests and demos.
pub const TEST_ONLY_PRIVATE_KEY_PEM: &str = "\
-----BEGIN RSA PRIVATE KEY-----
MIIEogIBAAKCAQEAx/t8ushWsSgnUyc/N35LGnyboU/mSCr+paVkmOGSy7oOswr3
Tsc9Q5+oCMlf1Wyxxe9XThwQ4Qe0s70B2ssMrB9slg2CuNS7Zt1IFm5VT2y0mu+9
lbiERAwzxiC7TJLoRzc/4R12QDL8eumB/ieRXtPDRPzOkfMDhDDxN2Dhx4JEWBh3
WmjKGCHdCb/HUdCPxOOT8q6mEFYSS2dTjtQ3MKgaJRh0HKaDUtdxBPuUa6PwVCdm
Io0AH5ygKHUdh2c31esLu7qbMxSWji8h6e1q5e97SYx9tyIEWheaOCVx0MXj8++S
x82vcGZTGDA3jGyeimRAU64QPp8S5aP2cf20mwIDAQABAoIBADXyrmW26MgWxHEG
q+OdAsas6dD8/GroilSGRxqE87RYx2FeanPKhMjq14ozRNKO5XA3jk5IfPcvvHwm
V0s+Lnd6bLEYCPUykjGALVO7xPDNqvUHCpZKtgejYQ4oQ063bMjVazqf14gfGQRR
XNuCshEqQEmqh1FRBNhS2aeuT4ohrJiVtwYUoBLhS0lu55KNJSmIBtfYQcCx7BZT
/1esQD+w3lPqRe84b6UE7Jif/dayv0qvAAaQOik1y6XFvYJHsndXomlandjpjwFP
sZ1t9salBdNKAJQBbgoHjdXM3JLdC4e2Y5k1iEsCKDTBamc/o8GLVyoKaUGe//5Q
x5iROGECgYEA49pZVq5wdeApIN6RyZXcrGNi6P2NRgcQX0VayTSQzp8YpItvGQtM
xXbXHfuVUzzUPptzgYxa3SY2/Dw9xuj0aBfoWrEAYMVByu4MbyDI67pNuD/gFXfh
qgm0vnEYgPgAw5PdOuxhAeaJ5DUARdBbp8aMdAQTSimLrEXMvYAEdTsCgYEA4K/B
lJZmXFH1PjBgDkryfro9p+0DSptAFY6Fr277n/DueE3Mksl+xOICbfYu4il7PU9m
SpN0mMcM8AdjvMLKWNiSnMFqIQJEWWE9EynCcTA5l8RS4uDkXEMdJXJnksCM6MLM
O8lACwkcyV/hZRv5Z6Jiqny+uwxN7XVAPYI2SCECgYAIYsTe99STwghBeW+MJ8PT
ZGUDhjFo3mGv3/GTbifWMuzJQYh5N30/1zvbkqLQSXDWTQpXPj8p3HoxllX/uBsm
qZqXm+QTq67cNR6oCGDcrCKoIVGx+JOJmonYaHkqZfZBPHPr8z8uvrlceMblyuFU
r24D5xJ+rEDDul3qq4d+eQKBgCcNhWkNJyd+u1Ce2eNCFZn/Rv4sDPlnuKDGj+fp
M2UeXGSeqSMOULFp0yBHvOhka15BsbbeoFJ5rn792dESTldY9Uq3t3mbSkP6ycHN
7VT9G9WMMxfqHOcIZ0V9+BCi1RsT2Km/lhkU8WLy/lsznIrtx5Z4bjJWtijCy3Kl
ckfhAoGAXgTXcsyIAnGilX8E2wiCbwUh90QJYnJhFLzOeg0zm16lYGawdFGx56mh
1RtyKv7tdAfyN2Kd0MYhm9Hvv2zVSlZQlEV7mVeQ5PCVaEPaPudmGtFJs0UdQGgn
jptFkZQ8rceXn872432TgNlUDd8rEhSTJkhjIhKrJ3AY4sP+sIA=
-----END RSA PRIVATE KEY-----
";

/// TEST ONLY: a second, unrelated RSA key (PKCS#1 PEM), used to produce tokens whose
/// signature does not match the published key for [`KID`]. Protects nothing.
pub const TEST_ONLY_OTHER_PRIVATE_KEY_PEM: &str = "\
-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEAvLurem8OwT3vZ12uYx6zpJ5ouZXKEHAwWpUz/XAiwipjQE5e
70n9P4tIY0+/tx1XYQDuUsn37xv2hs84ytN/woCdo8qX6CdVEeOdb7hgojdcWnVn
JsRd8Rr9UbhaOT2dif1RNIf4zfZPTOIRe2UeO0uCQ/9EwwFNeCQyMawvBNUDVIZc
I1T1O3DfV5QKLzkXdD0IME7lU8th97FD3gxd4lGcCYJr/BHkPPF1XiRA68hHAd48
DKPcuHr1nzRz3+xz1lcwLdRKlGVMd6yYabtNiXNLcQa5RAJLOaLWpqnf+TI98Cj+
N5bGMS9lUOd2y7AEqQEvDvDNDfZ3Qfit8BW1owIDAQABAoIBADQcIRGR/mHupt5E
aHTnsjQepM2xBPSa9U7daVhtkLtJltPXj7DEHg9gdqEtEMMPb+PRrPvg1fsIHn5E
Uur1kI30kxH5Sw4HZh6lWP/SyaOgY3h6d/ulNkbu68iXfRnW4FuMPNKjRFghzO1u
ceM/HSTECXiaz7KD9o7Yd59taiIL8E0P8lJcZCVyrNwc3hwDIk/dc2iKMD+E/4t9
qfK8FXgDzzpkwhjXuBoyfb1J06XXUPw1zkue3fjhbdSLUhmUW6tT3YpWjJPLFpHF
VBjm4yWvaHCL6XPDso6Ay29vBkmhDGj0MMPKT9mU+eTbPqzyFnxvnCSpyFI3BKog
8DcRMDkCgYEA9nW3SpHMAPfWNnAKST9ZVHFjnHlDq52d4IebgtCEuzZTzYHoR35t
jgC2T8RYX35cg3qEFNFgjeiOGjmZxoq1SHfrD4va0xCZrSREbZcKm6dluZwiOVhC
YnRrhq49jdUKq8DjIGEXPdp61t8G2d5UV0PuN3weyc3iquhmFgNHCv8CgYEAxAnp
t5mPiiyA8wbHniZd9A+LAtp9OrwAyMbrclvHjRwM3tbFo6s2vI00CBPz2SuCDHOw
pO0uJhz+1BjdoNssFp5rGLiqd9XbH3nyP9CRfBJfifAbhQEjfUZAPYhssVEVG6DM
bYyMPf6q4wyxLtBmw01OCgEAqEuzqtUO3/bcSV0CgYEAtx+aNB8GnIWJteMj0W7v
ee3SXLZBkKdJYkaARv+WT+A6/kyTAWQwFL30uGokW7fxF4QV1b4I5wgvZc78smfn
8NOhZWi+C+ues+ZprZ/3stX7oKEhUMiCctMb/fNDKzprdliYqjtZ4IyQj00hswoe
UsTXoIRp//opfGG3UI3Y4JMCgYA2L9NFZ5HQjJqcElys70f7BSzUfhYtXPgOh0Vf
V9UhwQYhtlXs9o9rsNAYB4PYnHkW/gdunwyphkw9zh28r7hRDDroG2srMpad7bQz
RXBhTibQVukUa4smvntVRtdcb+AYweqfwUCmhjUwCzsSiJJPG5gdlcdbvYkNCFVT
PMYJFQKBgBSJkY/QhLKx5+jzSDGCbf+2MPjQwHRdWGF2+0IdtQuBJ/PJeH2J/JuQ
9QuQTBnHSVHRZ7x6EyZzLY8vCS0zKngjc9nuS113rnrAkPz+v3eZ2/LSww1LLoxs
JpAGpfUmTQMHw9RfxjL3FmBqxfwV4zXxaburIG+Lj5VRLZ7u+TlO
-----END RSA PRIVATE KEY-----
";

/// A JWKS document (`{"keys": [...]}`) publishing the public half of
/// [`TEST_ONLY_PRIVATE_KEY_PEM`] under [`KID`], in the shape of Google's
/// `https://www.googleapis.com/oauth2/v3/certs`.
pub fn jwks_json() -> Value {
    json!({ "keys": [jwk(KID)] })
}

/// The public half of [`TEST_ONLY_PRIVATE_KEY_PEM`] as one JWKS entry with key id `kid`.
pub fn jwk(kid: &str) -> Value {
    jwk_for(TEST_ONLY_PRIVATE_KEY_PEM, kid)
}

/// The public half of [`TEST_ONLY_OTHER_PRIVATE_KEY_PEM`] as one JWKS entry with key id `kid`
/// (for key-rotation tests).
pub fn other_jwk(kid: &str) -> Value {
    jwk_for(TEST_ONLY_OTHER_PRIVATE_KEY_PEM, kid)
}

/// Signs `claims` with [`TEST_ONLY_PRIVATE_KEY_PEM`]: header `{"alg":"RS256","kid":KID,"typ":"JWT"}`.
pub fn sign(claims: &Value) -> String {
    sign_raw(
        TEST_ONLY_PRIVATE_KEY_PEM,
        Some(KID),
        Algorithm::RS256,
        claims,
    )
}

/// Like [`sign`] but with another key id in the header (for unknown-key tests).
pub fn sign_with_kid(claims: &Value, kid: &str) -> String {
    sign_raw(
        TEST_ONLY_PRIVATE_KEY_PEM,
        Some(kid),
        Algorithm::RS256,
        claims,
    )
}

/// Signs with [`TEST_ONLY_OTHER_PRIVATE_KEY_PEM`] but claims key id [`KID`], so the signature
/// does not verify against [`jwks_json`].
pub fn sign_with_other_key(claims: &Value) -> String {
    sign_raw(
        TEST_ONLY_OTHER_PRIVATE_KEY_PEM,
        Some(KID),
        Algorithm::RS256,
        claims,
    )
}

/// Signs with [`TEST_ONLY_OTHER_PRIVATE_KEY_PEM`] under key id `kid` (valid against a key set
/// containing [`other_jwk`]`(kid)`).
pub fn sign_with_other_key_as(claims: &Value, kid: &str) -> String {
    sign_raw(
        TEST_ONLY_OTHER_PRIVATE_KEY_PEM,
        Some(kid),
        Algorithm::RS256,
        claims,
    )
}

/// Claims shaped like the OIDC token Pub/Sub attaches to a push request.
pub fn google_claims(aud: &str, email: &str, iat: i64, exp: i64) -> Value {
    json!({
        "aud": aud,
        "azp": TEST_SUBJECT,
        "email": email,
        "email_verified": true,
        "exp": exp,
        "iat": iat,
        "iss": "https://accounts.google.com",
        "sub": TEST_SUBJECT,
    })
}

/// `Bearer <token>`, the `Authorization` header value Pub/Sub sends.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Signs `claims` with one of the embedded keys and any RSA algorithm.
///
/// # Panics
/// If `pem` is not one of the embedded, known-good keys; that is a bug in the caller, not a
/// reaction to input.
pub fn sign_raw(pem: &str, kid: Option<&str>, alg: Algorithm, claims: &Value) -> String {
    let der = pem_to_der(pem).expect("embedded test key is valid PEM");
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_der(&der))
        .expect("embedded test key signs")
}

fn jwk_for(pem: &str, kid: &str) -> Value {
    let (n, e) = pem_to_der(pem)
        .and_then(|der| rsa_public_components(&der))
        .expect("embedded test key is a valid PKCS#1 RSA key");
    json!({
        "kty": "RSA",
        "alg": "RS256",
        "use": "sig",
        "kid": kid,
        "n": URL_SAFE_NO_PAD.encode(n),
        "e": URL_SAFE_NO_PAD.encode(e),
    })
}

/// The DER bytes inside a PEM block.
fn pem_to_der(pem: &str) -> Result<Vec<u8>, String> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    STANDARD.decode(body).map_err(|e| e.to_string())
}

/// Modulus and public exponent (big-endian, no leading zeros) of a PKCS#1 `RSAPrivateKey`:
/// `SEQUENCE { version INTEGER, modulus INTEGER, publicExponent INTEGER, ... }`.
fn rsa_public_components(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    let (tag, body, _) = der_element(der).ok_or("truncated key")?;
    if tag != SEQUENCE {
        return Err("key is not a DER SEQUENCE".to_owned());
    }
    let mut ints = Vec::with_capacity(3);
    let mut rest = body;
    while ints.len() < 3 {
        let (tag, content, next) = der_element(rest).ok_or("truncated key")?;
        if tag != INTEGER {
            return Err("expected a DER INTEGER".to_owned());
        }
        let first_nonzero = content
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(content.len());
        ints.push(content[first_nonzero..].to_vec());
        rest = next;
    }
    let e = ints.pop().unwrap_or_default();
    let n = ints.pop().unwrap_or_default();
    Ok((n, e))
}

/// One DER element: `(tag, content, remaining input)`.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (len_bytes, after) = rest.split_at_checked(count)?;
        rest = after;
        len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    let (content, rest) = rest.split_at_checked(len)?;
    Some((tag, content, rest))
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;

    /// `openssl rsa -in key.pem -noout -modulus`, base64url-encoded, computed when the key was
    /// generated. Guards the hand-written DER reader against silently producing a wrong JWKS.
    const EXPECTED_N: &str = "x_t8ushWsSgnUyc_N35LGnyboU_mSCr-paVkmOGSy7oOswr3Tsc9Q5-oCMlf1Wyxxe9XThwQ4Qe0s70B2ssMrB9slg2CuNS7Zt1IFm5VT2y0mu-9lbiERAwzxiC7TJLoRzc_4R12QDL8eumB_ieRXtPDRPzOkfMDhDDxN2Dhx4JEWBh3WmjKGCHdCb_HUdCPxOOT8q6mEFYSS2dTjtQ3MKgaJRh0HKaDUtdxBPuUa6PwVCdmIo0AH5ygKHUdh2c31esLu7qbMxSWji8h6e1q5e97SYx9tyIEWheaOCVx0MXj8--Sx82vcGZTGDA3jGyeimRAU64QPp8S5aP2cf20mw";
    const EXPECTED_OTHER_N: &str = "vLurem8OwT3vZ12uYx6zpJ5ouZXKEHAwWpUz_XAiwipjQE5e70n9P4tIY0-_tx1XYQDuUsn37xv2hs84ytN_woCdo8qX6CdVEeOdb7hgojdcWnVnJsRd8Rr9UbhaOT2dif1RNIf4zfZPTOIRe2UeO0uCQ_9EwwFNeCQyMawvBNUDVIZcI1T1O3DfV5QKLzkXdD0IME7lU8th97FD3gxd4lGcCYJr_BHkPPF1XiRA68hHAd48DKPcuHr1nzRz3-xz1lcwLdRKlGVMd6yYabtNiXNLcQa5RAJLOaLWpqnf-TI98Cj-N5bGMS9lUOd2y7AEqQEvDvDNDfZ3Qfit8BW1ow";

    fn verifies(token: &str, jwk: &Value) -> bool {
        let (Some(n), Some(e)) = (jwk["n"].as_str(), jwk["e"].as_str()) else {
            return false;
        };
        let Ok(key) = DecodingKey::from_rsa_components(n, e) else {
            return false;
        };
        let mut v = Validation::new(Algorithm::RS256);
        v.validate_exp = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        jsonwebtoken::decode::<Value>(token, &key, &v).is_ok()
    }

    #[test]
    fn jwks_matches_the_openssl_modulus() {
        let jwks = jwks_json();
        let key = &jwks["keys"][0];
        assert_eq!(key["kid"], KID);
        assert_eq!(key["kty"], "RSA");
        assert_eq!(key["alg"], "RS256");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["n"], EXPECTED_N);
        assert_eq!(key["e"], "AQAB");
        assert_eq!(other_jwk("k2")["n"], EXPECTED_OTHER_N);
    }

    #[test]
    fn signed_tokens_verify_against_the_published_key_only() {
        let claims = google_claims("aud", "a@b.iam.gserviceaccount.com", 1, 2);
        let token = sign(&claims);
        assert!(verifies(&token, &jwk(KID)));
        assert!(!verifies(&sign_with_other_key(&claims), &jwk(KID)));
        assert!(verifies(
            &sign_with_other_key_as(&claims, "k2"),
            &other_jwk("k2")
        ));
        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.kid.as_deref(), Some(KID));
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
    }

    #[test]
    fn der_reader_rejects_garbage() {
        assert!(rsa_public_components(&[]).is_err());
        assert!(rsa_public_components(&[0x30, 0x82, 0xff]).is_err());
        assert!(rsa_public_components(&[0x30, 0x03, 0x04, 0x01, 0x00]).is_err());
        assert!(der_element(&[0x02, 0x85, 1, 1, 1, 1, 1]).is_none());
    }
}
