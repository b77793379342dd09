//! `management.otlp.tracing.*` and `management.tracing.*`: trace export over OTLP, named
//! as Spring Boot names it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `management.otlp.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct OtlpSettings {
    /// `management.otlp.tracing.*`
    pub tracing: OtlpTracing,
}

/// `management.otlp.tracing.*`: where spans go.
///
/// ```
/// let c = mq_core::Config::from_yaml_str(
///     "management:\n  otlp:\n    tracing:\n      endpoint: http://collector:4318/v1/traces\n",
/// ).unwrap();
/// assert_eq!(c.management.otlp.tracing.endpoint.as_deref(), Some("http://collector:4318/v1/traces"));
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct OtlpTracing {
    /// The collector's OTLP/HTTP traces URL (`http://host:4318/v1/traces`). Unset (and no
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`): nothing is
    /// exported.
    pub endpoint: Option<String>,
    /// Headers sent with every export (an API key, a tenant); values are secrets to the
    /// actuator's `/env`-like views.
    #[serde(deserialize_with = "super::properties::string_map")]
    pub headers: BTreeMap<String, String>,
    /// How long one export may take before it is dropped (default 10s).
    #[serde(with = "super::duration")]
    pub timeout: Duration,
    /// Spans waiting for export; when full, new spans are dropped, never waited for
    /// (default 2048, OpenTelemetry's).
    pub max_queue_size: usize,
}

impl Default for OtlpTracing {
    fn default() -> Self {
        OtlpTracing {
            endpoint: None,
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(10),
            max_queue_size: 2048,
        }
    }
}

/// `management.tracing.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct TracingSettings {
    /// `false` turns export off even with an endpoint (default `true`).
    pub enabled: bool,
    /// `management.tracing.sampling.*`
    pub sampling: Sampling,
}

impl Default for TracingSettings {
    fn default() -> Self {
        TracingSettings {
            enabled: true,
            sampling: Sampling::default(),
        }
    }
}

/// `management.tracing.sampling.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Sampling {
    /// Share of new traces recorded, 0.0–1.0 (default 0.1, Spring Boot's). A message whose
    /// producer sampled its trace is recorded whatever this says (parent-based).
    pub probability: f64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { probability: 0.1 }
    }
}

/// The problems of these settings, each naming its key.
pub(super) fn problems(otlp: &OtlpSettings, tracing: &TracingSettings) -> Vec<String> {
    let mut problems = Vec::new();
    let p = tracing.sampling.probability;
    if !(0.0..=1.0).contains(&p) {
        problems.push(format!(
            "management.tracing.sampling.probability must be between 0.0 and 1.0 (got {p})"
        ));
    }
    if let Some(endpoint) = &otlp.tracing.endpoint {
        if let Some(problem) = endpoint_problem(endpoint) {
            problems.push(format!("management.otlp.tracing.endpoint {problem}"));
        }
    }
    if otlp.tracing.max_queue_size == 0 {
        problems.push("management.otlp.tracing.max-queue-size must be at least 1".to_owned());
    }
    problems
}

/// Why `endpoint` cannot be exported to, if it cannot: only `http://` is built in (a
/// collector or agent beside the service; TLS is the collector's business).
pub(crate) fn endpoint_problem(endpoint: &str) -> Option<String> {
    if endpoint.starts_with("http://") && endpoint.len() > "http://".len() {
        None
    } else if endpoint.starts_with("https://") {
        Some(format!(
            "is {endpoint:?}: https is not built in; export to a collector or agent over \
             http:// (e.g. http://localhost:4318/v1/traces) and let it forward over TLS"
        ))
    } else {
        Some(format!(
            "is {endpoint:?}: expected an http:// URL such as http://localhost:4318/v1/traces"
        ))
    }
}

/// Where and how spans are exported, resolved from `management.*` and the standard
/// `OTEL_*` variables: what [`Config::trace_export`](super::Config::trace_export) gives.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceExport {
    /// The OTLP/HTTP traces URL.
    pub endpoint: String,
    /// Headers of every export request.
    pub headers: BTreeMap<String, String>,
    /// Timeout of one export.
    pub timeout: Duration,
    /// Spans waiting for export before new ones are dropped.
    pub max_queue_size: usize,
    /// Share of new traces sampled (parent-based: a sampled producer's trace is kept).
    pub probability: f64,
    /// The `service.name` resource attribute.
    pub service_name: String,
}

impl super::Config {
    /// The trace export this configuration asks for, or `None` when nothing is to be
    /// exported: no `management.otlp.tracing.endpoint`, no `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
    /// or `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` is added to the latter), or
    /// `management.tracing.enabled: false`, or `OTEL_SDK_DISABLED=true`.
    ///
    /// Configuration keys win over `OTEL_*` variables, except the sampler:
    /// `OTEL_TRACES_SAMPLER` (`always_on`, `always_off`, `traceidratio` and their
    /// `parentbased_` forms) with `OTEL_TRACES_SAMPLER_ARG` overrides
    /// `management.tracing.sampling.probability`. Headers from
    /// `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS` (`k=v,k2=v2`) are added under names the
    /// configuration does not set. `service.name` is `OTEL_SERVICE_NAME`, else
    /// `mq.application.name`.
    ///
    /// ```
    /// let c = mq_core::Config::from_yaml_str(
    ///     "mq:\n  application:\n    name: shop\nmanagement:\n  otlp:\n    tracing:\n      endpoint: http://c:4318/v1/traces\n",
    /// ).unwrap();
    /// let export = c.trace_export().unwrap().expect("an endpoint is set");
    /// assert_eq!(export.endpoint, "http://c:4318/v1/traces");
    /// ```
    ///
    /// # Errors
    /// A variable that holds no usable value, named with its value.
    pub fn trace_export(&self) -> Result<Option<TraceExport>, super::ConfigError> {
        self.trace_export_with(|name| std::env::var(name).ok())
    }

    pub(crate) fn trace_export_with(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<TraceExport>, super::ConfigError> {
        let settings = &self.management;
        let disabled =
            env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        if disabled || !settings.tracing.enabled {
            return Ok(None);
        }
        let problem = |msg: String| super::ConfigError(msg);
        let endpoint = match &settings.otlp.tracing.endpoint {
            Some(e) => e.clone(),
            None => {
                let traces = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                    .map(|e| ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", e));
                let base = || {
                    env("OTEL_EXPORTER_OTLP_ENDPOINT").map(|e| {
                        (
                            "OTEL_EXPORTER_OTLP_ENDPOINT",
                            format!("{}/v1/traces", e.trim_end_matches('/')),
                        )
                    })
                };
                let Some((var, endpoint)) = traces.or_else(base) else {
                    return Ok(None);
                };
                if let Some(why) = endpoint_problem(&endpoint) {
                    return Err(problem(format!("environment variable {var} {why}")));
                }
                endpoint
            }
        };
        let mut headers = settings.otlp.tracing.headers.clone();
        for var in [
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ] {
            for pair in env(var)
                .iter()
                .flat_map(|v| v.split(','))
                .filter(|p| !p.trim().is_empty())
            {
                let Some((k, v)) = pair.split_once('=') else {
                    return Err(problem(format!(
                        "environment variable {var}: {pair:?} is not name=value"
                    )));
                };
                headers
                    .entry(k.trim().to_owned())
                    .or_insert_with(|| v.trim().to_owned());
            }
        }
        let mut probability = settings.tracing.sampling.probability;
        if let Some(sampler) = env("OTEL_TRACES_SAMPLER") {
            let arg = env("OTEL_TRACES_SAMPLER_ARG");
            probability = match sampler.trim().trim_start_matches("parentbased_") {
                "always_on" => 1.0,
                "always_off" => 0.0,
                "traceidratio" => match arg.as_deref().map(str::trim).map(str::parse::<f64>) {
                    Some(Ok(p)) if (0.0..=1.0).contains(&p) => p,
                    None => 1.0,
                    Some(_) => {
                        return Err(problem(format!(
                            "environment variable OTEL_TRACES_SAMPLER_ARG is {arg:?}: expected a number from 0.0 to 1.0"
                        )))
                    }
                },
                other => {
                    return Err(problem(format!(
                        "environment variable OTEL_TRACES_SAMPLER is {other:?}: expected always_on, \
                         always_off, traceidratio or their parentbased_ forms"
                    )))
                }
            };
        }
        let service_name =
            env("OTEL_SERVICE_NAME").unwrap_or_else(|| self.mq.application.name.clone());
        Ok(Some(TraceExport {
            endpoint,
            headers,
            timeout: settings.otlp.tracing.timeout,
            max_queue_size: settings.otlp.tracing.max_queue_size,
            probability,
            service_name,
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn problem(yaml: &str) -> String {
        Config::from_yaml_str(yaml).unwrap_err().to_string()
    }

    #[test]
    fn bad_settings_name_their_key() {
        let e = problem("management:\n  tracing:\n    sampling:\n      probability: 1.5\n");
        assert!(e.contains("management.tracing.sampling.probability"), "{e}");
        let e = problem("management:\n  otlp:\n    tracing:\n      endpoint: collector:4318\n");
        assert!(e.contains("management.otlp.tracing.endpoint"), "{e}");
        let e =
            problem("management:\n  otlp:\n    tracing:\n      endpoint: https://c/v1/traces\n");
        assert!(e.contains("https is not built in"), "{e}");
    }

    #[test]
    fn spring_boot_names_and_defaults() {
        let c = Config::from_yaml_str(
            "management:\n  otlp:\n    tracing:\n      endpoint: http://c:4318/v1/traces\n      \
             headers:\n        api-key: s3cret\n      timeout: 2s\n  tracing:\n    sampling:\n      \
             probability: 1\n",
        )
        .unwrap();
        assert_eq!(c.management.otlp.tracing.headers["api-key"], "s3cret");
        assert_eq!(c.management.otlp.tracing.timeout.as_secs(), 2);
        assert_eq!(c.management.tracing.sampling.probability, 1.0);
        let d = Config::from_yaml_str("{}").unwrap();
        assert!(d.management.otlp.tracing.endpoint.is_none());
        assert_eq!(d.management.tracing.sampling.probability, 0.1);
        assert!(d.management.tracing.enabled);
    }

    fn export(yaml: &str, vars: &[(&str, &str)]) -> Result<Option<super::TraceExport>, String> {
        let c = Config::from_yaml_str(yaml).unwrap();
        c.trace_export_with(|n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn nothing_is_exported_unless_configured() {
        assert_eq!(export("{}", &[]), Ok(None));
        let off = "management:\n  tracing:\n    enabled: false\n  otlp:\n    tracing:\n      endpoint: http://c:4318/v1/traces\n";
        assert_eq!(export(off, &[]), Ok(None));
        let on = "management:\n  otlp:\n    tracing:\n      endpoint: http://c:4318/v1/traces\n";
        assert_eq!(export(on, &[("OTEL_SDK_DISABLED", "true")]), Ok(None));
        assert!(export(on, &[]).unwrap().is_some());
    }

    #[test]
    fn otel_variables_fill_in_and_the_configuration_wins() {
        let e = export(
            "mq:\n  application:\n    name: shop\n",
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://agent:4318/"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=k1, tenant=t"),
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(e.endpoint, "http://agent:4318/v1/traces");
        assert_eq!(
            (e.headers["api-key"].as_str(), e.headers["tenant"].as_str()),
            ("k1", "t")
        );
        assert_eq!((e.probability, e.service_name.as_str()), (0.25, "shop"));
        let configured = "management:\n  otlp:\n    tracing:\n      endpoint: http://c:4318/v1/traces\n      headers:\n        api-key: mine\n";
        let e = export(
            configured,
            &[
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://other:4318/v1/traces",
                ),
                ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=theirs"),
                ("OTEL_SERVICE_NAME", "svc"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(e.endpoint, "http://c:4318/v1/traces");
        assert_eq!(
            (e.headers["api-key"].as_str(), e.service_name.as_str()),
            ("mine", "svc")
        );
    }

    #[test]
    fn a_bad_variable_is_named() {
        let e = export(
            "{}",
            &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4318")],
        )
        .unwrap_err();
        assert!(e.contains("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), "{e}");
        let on = "management:\n  otlp:\n    tracing:\n      endpoint: http://c:4318/v1/traces\n";
        let e = export(on, &[("OTEL_TRACES_SAMPLER", "jaeger_remote")]).unwrap_err();
        assert!(e.contains("OTEL_TRACES_SAMPLER"), "{e}");
        let e = export(
            on,
            &[
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "2"),
            ],
        )
        .unwrap_err();
        assert!(e.contains("OTEL_TRACES_SAMPLER_ARG"), "{e}");
        let e = export(on, &[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")]).unwrap_err();
        assert!(e.contains("OTEL_EXPORTER_OTLP_HEADERS"), "{e}");
    }
}
