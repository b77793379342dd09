//! `content-encoding`: what was done to the body after it was written as text, undone
//! before it is decoded. As Spring AMQP writes it: a charset (`UTF-8`, what its message
//! converters set), a compression (`gzip`, `deflate`, `zip`: its `GZipPostProcessor`,
//! `DeflaterPostProcessor` and `ZipPostProcessor`), or a compression followed by the
//! encoding the body had before it, joined by `:` (Spring AMQP before 2.2.4) or `, ` (its
//! `encodingDelimiter` since): `gzip:UTF-8`, `gzip, UTF-8`.
//!
//! Compressions are undone in the order listed (the outermost first); what they inflate to
//! is capped by `mq.listener.max-payload-bytes`, so a small compressed body cannot blow up
//! in memory. Charsets: UTF-8 and US-ASCII are what JSON is read as already; ISO-8859-1 is
//! converted. Anything else is a [`DecodeError::UnsupportedEncoding`] naming it: the record
//! is poison (dead-lettered, not retried), with its body and `content_encoding` as they
//! came, so it can be replayed once mq, or a tool, can read it.

use std::borrow::Cow;
use std::io::Read;

use flate2::read::{DeflateDecoder, GzDecoder, ZlibDecoder};

use super::DecodeError;

/// `value` with the encodings `encoding` lists undone; at most `limit` bytes.
pub(super) fn decode<'a>(
    value: &'a [u8],
    encoding: &str,
    limit: usize,
) -> Result<Cow<'a, [u8]>, DecodeError> {
    let mut body = Cow::Borrowed(value);
    for token in encoding
        .split([',', ':'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let inflated = match token.to_ascii_lowercase().as_str() {
            "identity" | "utf-8" | "utf8" | "us-ascii" | "ascii" => continue,
            "iso-8859-1" | "iso8859-1" | "latin1" | "latin-1" => {
                // Each byte is the code point of the same number.
                body = Cow::Owned(
                    body.iter()
                        .map(|&b| char::from(b))
                        .collect::<String>()
                        .into(),
                );
                continue;
            }
            "gzip" | "x-gzip" => inflate(GzDecoder::new(&body[..]), token, limit)?,
            "deflate" => {
                // Spring's (and HTTP's) `deflate` is zlib-wrapped; some producers send the
                // raw stream.
                match inflate(ZlibDecoder::new(&body[..]), token, limit) {
                    Err(DecodeError::InvalidEncoding { .. }) => {
                        inflate(DeflateDecoder::new(&body[..]), token, limit)?
                    }
                    other => other?,
                }
            }
            "zip" => unzip(&body, token, limit)?,
            _ => return Err(DecodeError::UnsupportedEncoding(token.to_owned())),
        };
        body = Cow::Owned(inflated);
    }
    Ok(body)
}

/// Reads `reader` to its end, refusing more than `limit` bytes.
fn inflate(reader: impl Read, encoding: &str, limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::InvalidEncoding {
            encoding: encoding.to_owned(),
            reason: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(DecodeError::InflatedOversized {
            encoding: encoding.to_owned(),
            limit,
        });
    }
    Ok(out)
}

/// The first entry of a zip archive (Spring's `ZipPostProcessor` writes one), deflated or
/// stored.
fn unzip(archive: &[u8], encoding: &str, limit: usize) -> Result<Vec<u8>, DecodeError> {
    let invalid = |reason: &str| DecodeError::InvalidEncoding {
        encoding: encoding.to_owned(),
        reason: reason.to_owned(),
    };
    let u16_at = |i: usize| {
        archive
            .get(i..i + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |i: usize| {
        archive
            .get(i..i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if u32_at(0) != Some(0x0403_4b50) {
        return Err(invalid("no zip local file header"));
    }
    let (Some(method), Some(size), Some(name_len), Some(extra_len)) =
        (u16_at(8), u32_at(18), u16_at(26), u16_at(28))
    else {
        return Err(invalid("truncated zip header"));
    };
    let start = 30 + usize::from(name_len) + usize::from(extra_len);
    let data = archive
        .get(start..)
        .ok_or_else(|| invalid("truncated zip entry"))?;
    match method {
        8 => inflate(DeflateDecoder::new(data), encoding, limit),
        0 => {
            let data = data
                .get(..size as usize)
                .ok_or_else(|| invalid("truncated stored zip entry"))?;
            inflate(data, encoding, limit)
        }
        other => Err(invalid(&format!("zip compression method {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use flate2::Compression;

    use super::*;

    const JSON: &[u8] = br#"{"n":1,"text":"caf\u00e9"}"#;

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    /// A zip archive of one deflated entry named `amqp`, laid out as Java's
    /// `ZipOutputStream` writes it (sizes in a data descriptor after the data).
    fn zip(b: &[u8]) -> Vec<u8> {
        let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
        e.write_all(b).unwrap();
        let data = e.finish().unwrap();
        let mut z = vec![0x50, 0x4b, 0x03, 0x04, 20, 0, 8, 0, 8, 0];
        z.extend([0u8; 16]);
        z.extend(4u16.to_le_bytes());
        z.extend(0u16.to_le_bytes());
        z.extend(b"amqp");
        z.extend(&data);
        z.extend([0x50, 0x4b, 0x07, 0x08]);
        z.extend([0u8; 12]);
        z
    }

    #[test]
    fn spring_encodings_are_undone() {
        let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
        zlib.write_all(JSON).unwrap();
        let zlib = zlib.finish().unwrap();
        let mut raw = DeflateEncoder::new(Vec::new(), Compression::default());
        raw.write_all(JSON).unwrap();
        let raw = raw.finish().unwrap();
        for (body, encoding) in [
            (JSON.to_vec(), "UTF-8"),
            (JSON.to_vec(), "utf8"),
            (gzip(JSON), "gzip"),
            (gzip(JSON), "gzip:UTF-8"),
            (gzip(JSON), "gzip, UTF-8"),
            (gzip(JSON), " GZIP ,utf-8 "),
            (zlib, "deflate"),
            (raw, "deflate:UTF-8"),
            (zip(JSON), "zip, UTF-8"),
        ] {
            let out = decode(&body, encoding, 1024).unwrap();
            assert_eq!(&out[..], JSON, "{encoding}");
        }
        let latin1 = decode(b"caf\xe9", "ISO-8859-1", 1024).unwrap();
        assert_eq!(&latin1[..], "café".as_bytes());
    }

    #[test]
    fn unknown_corrupt_and_oversized_are_named() {
        let e = decode(JSON, "br", 1024).unwrap_err();
        assert_eq!(e.kind(), "DecodeError::UnsupportedEncoding");
        assert!(e.to_string().contains("\"br\""), "{e}");
        let e = decode(JSON, "gzip, UTF-16", 1024).unwrap_err();
        assert_eq!(e.kind(), "DecodeError::InvalidEncoding", "not gzip at all");
        let e = decode(&gzip(JSON), "gzip, UTF-16", 1024).unwrap_err();
        assert!(e.to_string().contains("UTF-16"), "{e}");
        let bomb = gzip(&vec![b' '; 1 << 20]);
        assert!(bomb.len() < 2048);
        let e = decode(&bomb, "gzip", 4096).unwrap_err();
        assert_eq!(e.kind(), "DecodeError::InflatedOversized");
        assert!(e.to_string().contains("4096"), "{e}");
    }
}
