//! `management.*`: the actuator's server, endpoints, health and metrics settings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::lenient;

/// `management.*` (actuator).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ManagementConfig {
    /// `management.server.*`
    pub server: ManagementServer,
    /// `management.endpoints.*`
    pub endpoints: Endpoints,
    /// `management.endpoint.*`
    pub endpoint: EndpointSettings,
    /// `management.metrics.*`
    pub metrics: MetricsSettings,
    /// `management.otlp.*` (trace export)
    pub otlp: super::otlp::OtlpSettings,
    /// `management.tracing.*` (sampling)
    pub tracing: super::otlp::TracingSettings,
}

/// `management.server.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ManagementServer {
    /// Serve the actuator at all. Default true.
    pub enabled: bool,
    /// Bind address. Default `0.0.0.0`.
    #[serde(deserialize_with = "lenient::string")]
    pub address: String,
    /// Port; 0 picks a free one. Default 8081.
    pub port: u16,
    /// Credentials every actuator request needs, except the liveness and readiness probes
    /// (and the groups' additional paths). Default none: open, as without Spring Security.
    pub auth: AuthSettings,
}

/// `management.server.auth.*`: HTTP basic (`username` + `password`) and/or a bearer
/// token. The values are masked in `/actuator/info` and never logged.
///
/// ```
/// let c = mq_core::Config::from_yaml_str(
///     "management:\n  server:\n    auth:\n      username: ops\n      password: s3cret\n",
/// ).unwrap();
/// assert_eq!(c.management.server.auth.username.as_deref(), Some("ops"));
/// ```
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct AuthSettings {
    /// Basic auth user name (with `password`).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub username: Option<String>,
    /// Basic auth password (with `username`).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub password: Option<String>,
    /// `Authorization: Bearer <token>` accepted too.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub bearer_token: Option<String>,
}

impl std::fmt::Debug for AuthSettings {
    /// Never prints the secrets (a `{:?}` of the configuration may end up in a log).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked = |v: &Option<String>| v.as_ref().map(|_| "******");
        f.debug_struct("AuthSettings")
            .field("username", &self.username)
            .field("password", &masked(&self.password))
            .field("bearer_token", &masked(&self.bearer_token))
            .finish()
    }
}

impl Default for ManagementServer {
    fn default() -> Self {
        ManagementServer {
            enabled: true,
            address: "0.0.0.0".to_owned(),
            port: 8081,
            auth: AuthSettings::default(),
        }
    }
}

/// `management.endpoints.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Endpoints {
    /// `management.endpoints.web.*`
    pub web: WebEndpoints,
}

/// `management.endpoints.web.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct WebEndpoints {
    /// Default `/actuator`.
    #[serde(deserialize_with = "lenient::string")]
    pub base_path: String,
    /// Which endpoints answer.
    pub exposure: Exposure,
}

impl Default for WebEndpoints {
    fn default() -> Self {
        WebEndpoints {
            base_path: "/actuator".to_owned(),
            exposure: Exposure::default(),
        }
    }
}

/// `management.endpoints.web.exposure.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Exposure {
    /// Endpoint ids, or `*`. Default `health` (as Spring Boot).
    #[serde(deserialize_with = "lenient::string_list")]
    pub include: Vec<String>,
    /// Endpoint ids, or `*`, not exposed even when `include` names them (it wins, as in
    /// Spring Boot). Default none.
    #[serde(deserialize_with = "lenient::string_list")]
    pub exclude: Vec<String>,
}

impl Default for Exposure {
    fn default() -> Self {
        Exposure {
            include: vec!["health".to_owned()],
            exclude: Vec::new(),
        }
    }
}

/// `management.endpoint.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct EndpointSettings {
    /// `management.endpoint.health.*`
    pub health: HealthSettings,
}

/// When health details are shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShowDetails {
    /// Status only (default, as Spring Boot).
    #[default]
    Never,
    /// Components and details.
    Always,
    /// Components and details for requests with the credentials of
    /// `management.server.auth`; status only for the others (the probes) and when no
    /// credential is configured, as Spring Boot without an authenticated user.
    WhenAuthorized,
}

/// `management.endpoint.health.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct HealthSettings {
    /// `never`, `always` or `when-authorized`.
    pub show_details: ShowDetails,
    /// `management.endpoint.health.group.<name>.*`: health groups, as Spring Boot's. The
    /// built-in `liveness` and `readiness` groups can be changed here too (e.g. a user
    /// indicator joining readiness).
    pub group: BTreeMap<String, HealthGroupSettings>,
}

/// `management.endpoint.health.group.<name>.*`: one health group, served at
/// `<base-path>/health/<name>`.
///
/// ```
/// let c = mq_core::Config::from_yaml_str(
///     "management:\n  endpoint:\n    health:\n      group:\n        readiness:\n          include: kafka,listeners,warehouse\n",
/// ).unwrap();
/// assert_eq!(c.management.endpoint.health.group["readiness"].include, ["kafka", "listeners", "warehouse"]);
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct HealthGroupSettings {
    /// Health components in the group (`kafka`, `listeners`, `publisher`, `ping`, your
    /// indicators), or `*`. Default: all (built-in groups: their own set).
    #[serde(deserialize_with = "lenient::string_list")]
    pub include: Vec<String>,
    /// Components left out even when `include` names them.
    #[serde(deserialize_with = "lenient::string_list")]
    pub exclude: Vec<String>,
    /// Overrides `management.endpoint.health.show-details` for this group.
    pub show_details: Option<ShowDetails>,
    /// Another path that serves the group, Spring's `server:/healthz` or
    /// `management:/healthz` style (mq has one HTTP server, the management one: both
    /// prefixes mean it).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub additional_path: Option<String>,
}

/// `management.metrics.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct MetricsSettings {
    /// Labels put on every series, e.g. `application: order-service` (numbers and
    /// booleans are taken as their text).
    #[serde(deserialize_with = "super::properties::string_map")]
    pub tags: BTreeMap<String, String>,
}
