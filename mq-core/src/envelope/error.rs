//! [`DecodeError`]: why a record could not be decoded, and the [`DecodeLimits`] applied
//! first.

/// Why a record could not be decoded. Decode errors are permanent: the record is a poison
/// message and goes to the dead-letter topic without retry.
///
/// ```
/// use mq_core::envelope::DecodeError;
/// assert_eq!(DecodeError::Empty.to_string(), "record has no value");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Tombstone or zero-length value.
    #[error("record has no value")]
    Empty,
    /// Value larger than `mq.listener.max-payload-bytes`.
    #[error("record value is {size} bytes, over the limit of {limit} bytes")]
    Oversized {
        /// Size of the value.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Value is not UTF-8, so it cannot be JSON.
    #[error("record value is not UTF-8: {0}")]
    NotUtf8(#[from] std::str::Utf8Error),
    /// Value is not JSON of the expected shape.
    #[error("record value does not decode as {target}: {source}")]
    Json {
        /// The Rust type that was expected.
        target: &'static str,
        /// The JSON error, with line and column.
        source: serde_json::Error,
    },
    /// A required CloudEvents attribute is missing in binary mode.
    #[error("binary-mode event lacks required header ce_{0}")]
    MissingAttribute(&'static str),
    /// A binary-mode attribute header is not valid.
    #[error("header ce_{name} is not valid: {reason}")]
    InvalidAttribute {
        /// The attribute.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `specversion` is not 1.0.
    #[error("unsupported CloudEvents specversion {0:?} (only 1.0)")]
    UnsupportedSpecVersion(String),
    /// `content-encoding` names an encoding mq cannot undo.
    #[error(
        "unsupported content-encoding {0:?} (mq reads gzip, deflate, zip, identity and the \
         UTF-8, US-ASCII and ISO-8859-1 charsets)"
    )]
    UnsupportedEncoding(String),
    /// The value is not valid in the encoding its `content-encoding` names.
    #[error("record value is not valid {encoding}: {reason}")]
    InvalidEncoding {
        /// The encoding.
        encoding: String,
        /// What is wrong.
        reason: String,
    },
    /// Decompressed, the value passes `mq.listener.max-payload-bytes`.
    #[error("record value decompresses ({encoding}) to more than the limit of {limit} bytes")]
    InflatedOversized {
        /// The compression.
        encoding: String,
        /// The configured limit.
        limit: usize,
    },
}

impl DecodeError {
    /// A short, stable name of the error kind (used as the `exception` metric label and in
    /// the dead-letter headers).
    ///
    /// ```
    /// assert_eq!(mq_core::envelope::DecodeError::Empty.kind(), "DecodeError::Empty");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Empty => "DecodeError::Empty",
            DecodeError::Oversized { .. } => "DecodeError::Oversized",
            DecodeError::NotUtf8(_) => "DecodeError::NotUtf8",
            DecodeError::Json { .. } => "DecodeError::Json",
            DecodeError::MissingAttribute(_) => "DecodeError::MissingAttribute",
            DecodeError::InvalidAttribute { .. } => "DecodeError::InvalidAttribute",
            DecodeError::UnsupportedSpecVersion(_) => "DecodeError::UnsupportedSpecVersion",
            DecodeError::UnsupportedEncoding(_) => "DecodeError::UnsupportedEncoding",
            DecodeError::InvalidEncoding { .. } => "DecodeError::InvalidEncoding",
            DecodeError::InflatedOversized { .. } => "DecodeError::InflatedOversized",
        }
    }
}

/// Limits applied before decoding.
///
/// ```
/// let l = mq_core::envelope::DecodeLimits::default();
/// assert_eq!(l.max_payload_bytes, 1024 * 1024);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest value accepted; larger records are poison.
    pub max_payload_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_payload_bytes: 1024 * 1024,
        }
    }
}
