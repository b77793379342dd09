//! `management.*`: the actuator's server, endpoints, health and metrics settings.

use std::collections::BTreeMap;

use figment::value::Value;
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
}

impl Default for ManagementServer {
    fn default() -> Self {
        ManagementServer {
            enabled: true,
            address: "0.0.0.0".to_owned(),
            port: 8081,
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
}

impl Default for Exposure {
    fn default() -> Self {
        Exposure {
            include: vec!["health".to_owned()],
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
}

/// `management.endpoint.health.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct HealthSettings {
    /// `never` or `always`.
    pub show_details: ShowDetails,
}

/// `management.metrics.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct MetricsSettings {
    /// Labels put on every series, e.g. `application: order-service`.
    pub tags: BTreeMap<String, Value>,
}
