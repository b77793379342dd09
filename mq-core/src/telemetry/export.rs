//! Trace export over OTLP/HTTP with the opentelemetry crates (feature `otlp`): the layer
//! that turns mq's `mq_core::otel` spans into OpenTelemetry spans, and the context helpers
//! the span constructors use. Without the feature the helpers do nothing and no span is
//! ever enabled for export.

#[cfg(feature = "otlp")]
pub(crate) use with_otlp::{annotate, in_trace, sample_root, set_remote_parent, traceparent};
#[cfg(feature = "otlp")]
pub use with_otlp::{layer, Exporter};
#[cfg(not(feature = "otlp"))]
pub(crate) use without_otlp::*;

#[cfg(not(feature = "otlp"))]
mod without_otlp {
    use tracing::Span;

    pub(crate) fn annotate(_span: &Span, _key: &'static str, _offset: i64) {}
    pub(crate) fn set_remote_parent(_span: &Span, _traceparent: &str) {}
    pub(crate) fn in_trace() -> bool {
        false
    }
    pub(crate) fn traceparent(_span: &Span) -> Option<String> {
        None
    }
    /// No export: a span enabled for the logs is always made.
    pub(crate) fn sample_root() -> bool {
        true
    }
}

#[cfg(feature = "otlp")]
mod with_otlp {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
    };
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

    use opentelemetry::Context;
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    use opentelemetry_sdk::trace::{
        BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
    };
    use opentelemetry_sdk::Resource;
    use tracing::{Level, Span};
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::registry::LookupSpan;
    use tracing_subscriber::Layer;

    use crate::config::TraceExport;
    use crate::telemetry::spans::parse_traceparent;

    /// The share of new traces sampled (`f64` bits; 1.0 until a layer is built).
    pub(super) static PROBABILITY: AtomicU64 = AtomicU64::new(0x3FF0_0000_0000_0000);

    thread_local! {
        /// xorshift64* state, seeded per thread.
        static RNG: Cell<u64> = Cell::new({
            let here = &() as *const () as u64;
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            (here ^ nanos.rotate_left(17)) | 1
        });
    }

    /// Whether a new trace (a message with no sampled-or-not context) is recorded.
    pub(crate) fn sample_root() -> bool {
        let p = f64::from_bits(PROBABILITY.load(AtomicOrdering::Relaxed));
        if p >= 1.0 {
            return true;
        }
        if p <= 0.0 {
            return false;
        }
        let x = RNG.with(|r| {
            let mut x = r.get();
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            r.set(x);
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        });
        ((x >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    pub(crate) fn annotate(span: &Span, key: &'static str, offset: i64) {
        span.set_attribute(key, offset);
    }

    pub(crate) fn set_remote_parent(span: &Span, traceparent: &str) {
        if let Some((trace, id, flags)) = parse_traceparent(traceparent) {
            let remote = SpanContext::new(
                TraceId::from_bytes(trace.to_be_bytes()),
                SpanId::from_bytes(id.to_be_bytes()),
                TraceFlags::new(flags),
                true,
                TraceState::default(),
            );
            let _ = span.set_parent(Context::new().with_remote_span_context(remote));
        }
    }

    /// Whether the current span belongs to an exported trace (a handler's `process` span).
    pub(crate) fn in_trace() -> bool {
        Span::current().context().span().span_context().is_valid()
    }

    pub(crate) fn traceparent(span: &Span) -> Option<String> {
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        sc.is_valid().then(|| {
            format!(
                "00-{}-{}-{:02x}",
                sc.trace_id(),
                sc.span_id(),
                sc.trace_flags().to_u8()
            )
        })
    }

    /// The exporter behind a layer: flushed and stopped by [`Exporter::shutdown`].
    #[derive(Debug, Clone)]
    pub struct Exporter {
        provider: SdkTracerProvider,
    }

    impl Exporter {
        /// Exports what is queued and stops the export thread (waits at most the export
        /// timeout). Runs on a blocking thread: the export is synchronous.
        pub async fn shutdown(self) {
            let provider = self.provider;
            let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(e)) = done {
                tracing::debug!(error = %e, "trace export shutdown");
            }
        }
    }

    /// A layer exporting mq's spans (and WARN and ERROR events of `mq_core` as span
    /// events: retries, dead letters) as `export` says, and its exporter. Spans go to a
    /// bounded queue ([`TraceExport::max_queue_size`]) that a thread of its own sends in
    /// batches: an unreachable collector drops spans, it never slows a handler.
    ///
    /// # Errors
    /// The HTTP client could not be built.
    pub fn layer<S>(export: &TraceExport) -> Result<(impl Layer<S>, Exporter), String>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        PROBABILITY.store(export.probability.to_bits(), AtomicOrdering::Relaxed);
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(export.endpoint.clone())
            .with_headers(export.headers.clone().into_iter().collect())
            .with_timeout(export.timeout)
            .build()
            .map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
        let batches = BatchConfigBuilder::default()
            .with_max_queue_size(export.max_queue_size)
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batches)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            // mq decides for new traces before it makes a span (`sample_root`): the SDK
            // only follows the parent.
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
            .with_resource(
                Resource::builder()
                    .with_service_name(export.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("mq");
        let filter = Targets::new()
            .with_target("mq_core", Level::WARN)
            .with_target("mq_core::otel", Level::DEBUG);
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(filter);
        Ok((layer, Exporter { provider }))
    }
}

#[cfg(all(test, feature = "otlp"))]
mod tests {
    use std::sync::atomic::Ordering;

    use super::with_otlp::{sample_root, PROBABILITY};

    #[test]
    fn new_traces_are_sampled_at_the_configured_share() {
        let share = |p: f64| {
            PROBABILITY.store(p.to_bits(), Ordering::Relaxed);
            (0..100_000).filter(|_| sample_root()).count() as f64 / 100_000.0
        };
        assert_eq!(share(0.0), 0.0);
        assert_eq!(share(1.0), 1.0);
        let quarter = share(0.25);
        assert!((0.23..0.27).contains(&quarter), "{quarter}");
        PROBABILITY.store(1.0f64.to_bits(), Ordering::Relaxed);
    }
}
