//! Masking secrets in a configuration document before anyone sees it (`/actuator/info`,
//! logs): values under secret-sounding keys at any depth, and the secrets inside URLs and
//! connection strings wherever they sit.

use serde_json::{json, Value};

/// What a masked value reads.
pub(crate) const MASK: &str = "******";

/// Key fragments whose values are masked, at any depth (as Spring Boot's sanitizer, plus
/// `sasl` for Kafka's `sasl.*` settings and the short forms connection strings use).
const SENSITIVE: [&str; 9] = [
    "password",
    "passwd",
    "pwd",
    "secret",
    "sasl",
    "token",
    "key",
    "credential",
    "signature",
];

/// Masks, in place, every value whose key names a secret, and the secrets of every URL or
/// connection string (see [`mask_secrets`]).
pub(crate) fn sanitize(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_sensitive(k) {
                    *v = json!(MASK);
                } else if k == "headers" && v.is_object() {
                    // Export headers (`management.otlp.tracing.headers`) carry API keys
                    // under any name (`Authorization`, `x-honeycomb-team`).
                    v.as_object_mut()
                        .into_iter()
                        .flat_map(|m| m.values_mut())
                        .for_each(|h| *h = json!(MASK));
                } else {
                    sanitize(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(sanitize),
        Value::String(s) => {
            if let Some(masked) = mask_secrets(s) {
                *s = masked;
            }
        }
        _ => {}
    }
}

/// Whether a key (a map key, a query parameter, a connection-string keyword) names a
/// secret; percent-encoding and case do not hide one.
fn is_sensitive(key: &str) -> bool {
    let key = percent_decode(key).to_ascii_lowercase();
    SENSITIVE.iter().any(|s| key.contains(s))
}

/// `s` with its secrets masked, or `None` when it has none:
/// - the password of a URL's userinfo (`scheme://user:******@host`), also when the password
///   holds characters that should have been percent-encoded (`@`, `:`, `/`, `,`);
/// - the values of secret query parameters (`?sslpassword=******&sslmode=require`);
/// - `keyword=value` pairs of a libpq or JDBC-style connection string
///   (`host=db password=******`, `;Password=******`);
/// - each URL of a comma-separated list of URLs.
pub(crate) fn mask_secrets(s: &str) -> Option<String> {
    if !s.contains("://") && !s.contains('=') {
        return None;
    }
    let masked = if s.contains("://") {
        split_urls(s)
            .iter()
            .map(|url| mask_url(url))
            .collect::<Vec<_>>()
            .join(",")
    } else {
        mask_pairs(s, &[' ', ';', '&'])
    };
    (masked != s).then_some(masked)
}

/// A comma-separated list of URLs, split only where the next URL starts (`,scheme://`), so
/// that a comma inside a password stays with it.
fn split_urls(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, _) in s.match_indices(',') {
        if starts_with_scheme(&s[i + 1..]) {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    parts.push(&s[start..]);
    parts
}

fn starts_with_scheme(s: &str) -> bool {
    let Some(end) = s.find("://") else {
        return false;
    };
    let scheme = &s[..end];
    scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// One URL (or the text before the first URL of the list).
fn mask_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return mask_pairs(url, &[' ', ';', '&']);
    };
    let (head, rest) = url.split_at(scheme_end + 3);
    // The userinfo ends at the last `@` before the query: a raw `@`, `/` or `:` in the
    // password must not end it early.
    let query_at = rest.find(['?', '#']).unwrap_or(rest.len());
    let (before_query, query) = rest.split_at(query_at);
    let authority = match before_query.rfind('@') {
        Some(at) => {
            let (userinfo, host) = before_query.split_at(at);
            match userinfo.split_once(':') {
                Some((user, _password)) => format!("{user}:{MASK}{host}"),
                None => before_query.to_owned(),
            }
        }
        None => before_query.to_owned(),
    };
    let query = match query.strip_prefix('?') {
        Some(q) => {
            let (q, fragment) = q.split_at(q.find('#').unwrap_or(q.len()));
            format!("?{}{fragment}", mask_pairs(q, &['&', ';']))
        }
        None => query.to_owned(),
    };
    format!("{head}{authority}{query}")
}

/// `text` with the value of every `key=value` pair (separated by one of `separators`) whose
/// key names a secret masked.
fn mask_pairs(text: &str, separators: &[char]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find(separators).unwrap_or(rest.len());
        let (pair, tail) = rest.split_at(end);
        match pair.split_once('=') {
            Some((key, _)) if is_sensitive(key.trim()) => {
                out.push_str(key);
                out.push('=');
                out.push_str(MASK);
            }
            _ => out.push_str(pair),
        }
        let mut chars = tail.chars();
        if let Some(sep) = chars.next() {
            out.push(sep);
        }
        rest = chars.as_str();
    }
    out
}

/// `%41` → `A`; an invalid escape is kept as it is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each URL or connection string shape, and the secret it holds (`None`: it holds none,
    /// and must come back unchanged).
    const SHAPES: &[(&str, Option<&str>)] = &[
        ("postgres://bob:pw@db:5432/x", Some("pw")),
        (
            "postgres://app@db:5432/orders?password=Qu3ryS3cret",
            Some("Qu3ryS3cret"),
        ),
        (
            "postgres://app@db/orders?sslmode=require&sslpassword=k3yPass",
            Some("k3yPass"),
        ),
        ("postgresql://app@db/orders?PASSWORD=Upper", Some("Upper")),
        (
            "postgres://app@db/orders?pass%77ord=Encoded",
            Some("Encoded"),
        ),
        ("postgres://u:p@ss/w:rd@db:5432/x", Some("p@ss/w:rd")),
        ("amqp://guest:g%40st@rabbit:5672/%2f", Some("g%40st")),
        (
            "amqps://u:s3cr,et@r1:5671,amqps://u:other@r2:5671",
            Some("s3cr,et"),
        ),
        (
            "amqps://u:s3cr,et@r1:5671,amqps://u:other@r2:5671",
            Some("other"),
        ),
        (
            "mysql://root:r00t@db/x?ssl-mode=REQUIRED#frag",
            Some("r00t"),
        ),
        ("https://host/api?token=abc123&page=2", Some("abc123")),
        ("https://host/api?x=1;apiKey=kkk", Some("kkk")),
        (
            "host=db user=app password=libpqSecret dbname=orders",
            Some("libpqSecret"),
        ),
        (
            "Server=db;User Id=app;Password=AdoSecret;",
            Some("AdoSecret"),
        ),
        ("redis://h:6379", None),
        ("postgres://app@db:5432/orders", None),
        (
            "postgres://db/orders?sslmode=require&application_name=x",
            None,
        ),
        ("kafka1:9092,kafka2:9092", None),
        ("a@b", None),
        ("plain text", None),
        ("x=1 y=2", None),
    ];

    #[test]
    fn every_url_shape_loses_its_secret_and_keeps_the_rest() {
        for &(shape, secret) in SHAPES {
            let masked = mask_secrets(shape);
            match secret {
                Some(secret) => {
                    let masked = masked.unwrap_or_else(|| panic!("{shape}: nothing masked"));
                    assert!(
                        !masked.contains(secret),
                        "{shape}: {secret} leaked in {masked}"
                    );
                    assert!(masked.contains(MASK), "{shape}: {masked}");
                }
                None => assert_eq!(masked, None, "{shape} has no secret"),
            }
        }
    }

    #[test]
    fn what_is_not_secret_stays_readable() {
        assert_eq!(
            mask_secrets("postgres://app@db:5432/orders?password=Qu3ryS3cret&sslmode=require")
                .unwrap(),
            "postgres://app@db:5432/orders?password=******&sslmode=require"
        );
        assert_eq!(
            mask_secrets("postgres://bob:pw@db:5432/x,redis://h:6379").unwrap(),
            "postgres://bob:******@db:5432/x,redis://h:6379"
        );
        assert_eq!(
            mask_secrets("host=db password=x dbname=o").unwrap(),
            "host=db password=****** dbname=o"
        );
    }

    #[test]
    fn sanitize_masks_keys_at_any_depth_and_urls_in_values() {
        let mut v = json!({
            "datasource": {"url": "postgres://app@db/o?password=p1"},
            "list": ["amqp://u:p2@h"],
            "sasl": {"username": "alice"},
            "n": "a@b",
        });
        sanitize(&mut v);
        let text = v.to_string();
        for secret in ["p1", "p2", "alice"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(v["n"], "a@b");
    }

    #[test]
    fn export_headers_are_masked_whatever_their_names() {
        let mut v = json!({"management": {"otlp": {"tracing": {
            "endpoint": "http://c:4318/v1/traces",
            "headers": {"Authorization": "Basic abc", "x-honeycomb-team": "t0k"}
        }}}});
        sanitize(&mut v);
        let t = &v["management"]["otlp"]["tracing"];
        assert_eq!(t["headers"]["Authorization"], MASK);
        assert_eq!(t["headers"]["x-honeycomb-team"], MASK);
        assert_eq!(t["endpoint"], "http://c:4318/v1/traces");
    }
}
