//! `management.server.auth`: every actuator request but the probes needs HTTP basic
//! credentials or a bearer token.
//!
//! The probes (`<base>/health/liveness`, `<base>/health/readiness` and the groups'
//! additional paths) stay open: the kubelet sends no credentials, and they say nothing
//! secret without details. The expected `Authorization` values are built once; a request's
//! header is compared in constant time, and a refusal names no credential.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::config::AuthSettings;

/// What the middleware checks.
pub(crate) struct Auth {
    /// Accepted `Authorization` header values (`Basic ...`, `Bearer ...`).
    accepted: Vec<Vec<u8>>,
    /// Paths answered without credentials.
    open: Vec<String>,
    /// The `WWW-Authenticate` challenge of a refusal.
    challenge: &'static str,
}

impl Auth {
    /// `None` when no credential is configured (everything open).
    pub(crate) fn new(settings: &AuthSettings, open: Vec<String>) -> Option<Arc<Auth>> {
        let mut accepted = Vec::new();
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            accepted.push(format!(
                "Basic {}",
                base64(format!("{user}:{password}").as_bytes())
            ));
        }
        if let Some(token) = &settings.bearer_token {
            accepted.push(format!("Bearer {token}"));
        }
        if accepted.is_empty() {
            return None;
        }
        let challenge = if settings.username.is_some() {
            "Basic realm=\"actuator\", charset=\"UTF-8\""
        } else {
            "Bearer realm=\"actuator\""
        };
        Some(Arc::new(Auth {
            accepted: accepted.into_iter().map(String::into_bytes).collect(),
            open,
            challenge,
        }))
    }

    fn allows(&self, path: &str, authorization: Option<&HeaderValue>) -> bool {
        self.open.iter().any(|p| p == path) || self.authenticated(authorization)
    }

    /// Whether `authorization` carries one of the configured credentials.
    fn authenticated(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(given) = authorization.map(HeaderValue::as_bytes) else {
            return false;
        };
        // Every candidate is compared, each in constant time for its length.
        self.accepted
            .iter()
            .fold(false, |ok, expected| ok | constant_time_eq(given, expected))
    }
}

/// Marks a request that carried valid credentials (`show-details: when-authorized`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Authenticated;

/// The middleware: 401 with a challenge unless the request may pass.
pub(crate) async fn require(
    State(auth): State<Arc<Auth>>,
    mut request: Request,
    next: Next,
) -> Response {
    let authorization = request.headers().get(header::AUTHORIZATION);
    if auth.authenticated(authorization) {
        request.extensions_mut().insert(Authenticated);
        return next.run(request).await;
    }
    if auth.allows(request.uri().path(), authorization) {
        return next.run(request).await;
    }
    let body = json!({"status": 401, "error": "Unauthorized", "path": request.uri().path()});
    (
        StatusCode::UNAUTHORIZED,
        [
            (
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(auth.challenge),
            ),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
        ],
        body.to_string(),
    )
        .into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Standard base64 with padding (RFC 4648), for the expected `Basic` value.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_as_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
            ("Aladdin:open sesame", "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain}");
        }
    }

    #[test]
    fn credentials_and_open_paths() {
        let settings = AuthSettings {
            username: Some("Aladdin".into()),
            password: Some("open sesame".into()),
            bearer_token: Some("t0ken".into()),
        };
        let auth = Auth::new(&settings, vec!["/actuator/health/liveness".into()]).unwrap();
        let h = |v: &'static str| Some(HeaderValue::from_static(v));
        assert!(auth.allows(
            "/actuator/health",
            h("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==").as_ref()
        ));
        assert!(auth.allows("/actuator/health", h("Bearer t0ken").as_ref()));
        assert!(!auth.allows("/actuator/health", h("Bearer t0ke").as_ref()));
        assert!(!auth.allows(
            "/actuator/health",
            h("Basic QWxhZGRpbjpvcGVuIHNlc2FtZq==").as_ref()
        ));
        assert!(!auth.allows("/actuator/health", None));
        assert!(auth.allows("/actuator/health/liveness", None));
        assert!(Auth::new(&AuthSettings::default(), vec![]).is_none());
    }
}
