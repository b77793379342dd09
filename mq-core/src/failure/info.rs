//! [`FailureInfo`]: why a record failed, as every transport's dead letters and retry
//! records describe it.

/// Longest stack-trace header, in bytes.
pub const STACKTRACE_CAP: usize = 8 * 1024;

/// Why a record is being dead-lettered.
///
/// ```
/// let f = mq_core::failure::FailureInfo {
///     exception_type: "DecodeError::Json".into(),
///     cause_type: None,
///     message: "expected value at line 1".into(),
///     trace: "DecodeError::Json: expected value at line 1".into(),
/// };
/// assert!(f.cause_type.is_none());
/// ```
#[derive(Debug, Clone)]
pub struct FailureInfo {
    /// Error type name.
    pub exception_type: String,
    /// Type name of the underlying cause.
    pub cause_type: Option<String>,
    /// Error message.
    pub message: String,
    /// Error and causes, one per line.
    pub trace: String,
}

impl FailureInfo {
    /// What a decode error says: type `mq_core::envelope::DecodeError::<Kind>`.
    ///
    /// ```
    /// let info = mq_core::failure::FailureInfo::of_decode(&mq_core::envelope::DecodeError::Empty);
    /// assert_eq!(info.exception_type, "mq_core::envelope::DecodeError::Empty");
    /// ```
    pub fn of_decode(e: &crate::envelope::DecodeError) -> Self {
        FailureInfo {
            exception_type: format!("mq_core::envelope::{}", e.kind()),
            cause_type: None,
            message: e.to_string(),
            trace: format!("{}: {e}", e.kind()),
        }
    }

    /// What a handler's error says: its Rust type, message, and causes one per line.
    ///
    /// ```
    /// let e = mq_core::HandlerError::transient(std::fmt::Error);
    /// let info = mq_core::failure::FailureInfo::of_handler(&e);
    /// assert_eq!(info.exception_type, "core::fmt::Error");
    /// ```
    pub fn of_handler(error: &crate::handler::HandlerError) -> Self {
        let mut trace = format!("{}: {error}", error.type_name());
        for cause in error.causes() {
            trace.push_str("\nCaused by: ");
            trace.push_str(&cause);
        }
        FailureInfo {
            exception_type: error.type_name().to_owned(),
            cause_type: error
                .source()
                .source()
                .map(|_| "std::error::Error".to_owned()),
            message: error.to_string(),
            trace,
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_cuts_on_a_char_boundary() {
        let long = "é".repeat(STACKTRACE_CAP);
        let cut = truncate(&long, STACKTRACE_CAP);
        assert!(cut.len() <= STACKTRACE_CAP);
        assert!(cut.len() > STACKTRACE_CAP - 2);
    }
}
