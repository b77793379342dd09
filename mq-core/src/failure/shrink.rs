//! Cutting an oversized dead letter down, level by level ([`Shrink`]): one algorithm, each
//! transport naming its own headers ([`ShrinkNames`]) through
//! [`FailureRoutes::shrink`](super::routes::FailureRoutes::shrink).

use super::info::truncate;
use super::recoverer::Shrink;
use crate::record::OutgoingRecord;

/// What a shrunk dead letter keeps of the stack trace.
pub(crate) const SMALL_STACKTRACE: usize = 1024;

/// A transport's header names for a shrunk dead letter.
pub(crate) struct ShrinkNames {
    /// The exception message, which says the value went.
    pub(crate) exception_message: &'static str,
    /// The stack trace, cut to [`SMALL_STACKTRACE`] once the headers go.
    pub(crate) exception_stacktrace: &'static str,
    /// How large the value was and why it went.
    pub(crate) value_dropped: &'static str,
    /// How many headers went.
    pub(crate) headers_dropped: &'static str,
    /// How large the key was.
    pub(crate) key_dropped: &'static str,
    /// What the message calls the value (`value`, `body`).
    pub(crate) value_noun: &'static str,
    /// The headers kept at [`Shrink::WithoutHeaders`]: the dead letter's own.
    pub(crate) keep: fn(&str) -> bool,
}

/// `full` (a dead letter as built) cut down to `level`, with headers saying what went and
/// why (`reason`: the broker's refusal). The value becomes empty, not null: a null would
/// read as a tombstone and delete the key on a compacted topic.
pub(crate) fn shrink(
    full: &OutgoingRecord,
    level: Shrink,
    reason: &str,
    names: &ShrinkNames,
) -> OutgoingRecord {
    let mut out = full.clone();
    if level == Shrink::Full {
        return out;
    }
    let reason = truncate(reason, 512);
    if let Some(value) = out.value.take() {
        let dropped = format!("{} bytes: {reason}", value.len());
        let message = out
            .headers
            .get_str(names.exception_message)
            .map(|m| truncate(m, 4096).to_owned())
            .unwrap_or_default();
        let noun = names.value_noun;
        out.headers.insert(
            names.exception_message,
            format!("{message} [dead letter without its {noun} of {dropped}]").trim_start(),
        );
        out.headers.insert(names.value_dropped, dropped);
        out.value = Some(Vec::new());
    }
    if level >= Shrink::WithoutHeaders {
        let before = out.headers.len();
        out.headers.retain(names.keep);
        let dropped = before - out.headers.len();
        out.headers
            .insert(names.headers_dropped, dropped.to_string());
        if let Some(trace) = out.headers.get_str(names.exception_stacktrace) {
            let short = truncate(trace, SMALL_STACKTRACE).to_owned();
            out.headers.insert(names.exception_stacktrace, short);
        }
    }
    if level >= Shrink::WithoutKey {
        if let Some(key) = out.key.take() {
            out.headers.insert(names.key_dropped, key.len().to_string());
        }
    }
    out
}
