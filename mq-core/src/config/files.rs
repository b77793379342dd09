//! Loading: `application.yaml`, `application-{profile}.yaml`, then the environment.

use std::path::{Path, PathBuf};

use figment::providers::Format;
use figment::Figment;
use serde_saphyr::figment::Yaml;

use super::env::EnvVars;
use super::{split_list, Config, ConfigError, ProfilesConfig};

impl Config {
    /// Loads from the current directory (or `MQ_CONFIG_DIR`), active profiles and `MQ_*`.
    ///
    /// ```no_run
    /// let config = mq_core::Config::load().expect("valid application.yaml");
    /// ```
    pub fn load() -> Result<Config, ConfigError> {
        Self::load_or(".")
    }

    /// Loads from `MQ_CONFIG_DIR` when it is set, else from `dir`, with the active profiles
    /// and `MQ_*` (as [`Config::load_from`]). A service passes its crate's directory, so
    /// that `cargo run -p <service>` from anywhere finds its `application.yaml` while a
    /// deployment points `MQ_CONFIG_DIR` at a mounted one.
    ///
    /// ```no_run
    /// let config = mq_core::Config::load_or(env!("CARGO_MANIFEST_DIR")).expect("valid config");
    /// ```
    pub fn load_or(dir: impl AsRef<Path>) -> Result<Config, ConfigError> {
        match std::env::var_os("MQ_CONFIG_DIR") {
            Some(configured) => Self::load_from(PathBuf::from(configured)),
            None => Self::load_from(dir),
        }
    }

    /// Loads from `dir` (files), active profiles and `MQ_*` (environment).
    ///
    /// Environment values are strings (`MQ_KAFKA__CONSUMER__GROUP_ID=007` stays `"007"`);
    /// `MQ_*` variables that set no key (Kubernetes service links such as `MQ_PORT`) are
    /// ignored and listed by [`Config::ignored_environment`].
    ///
    /// ```
    /// let dir = std::env::temp_dir().join("mq-doc-load-from");
    /// std::fs::create_dir_all(&dir).unwrap();
    /// std::fs::write(dir.join("application.yaml"), "mq:\n  application:\n    name: doc\n").unwrap();
    /// let config = mq_core::Config::load_from(&dir).unwrap();
    /// assert_eq!(config.mq.application.name, "doc");
    /// ```
    pub fn load_from(dir: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let dir = dir.as_ref();
        let base = ["application.yaml", "application.yml"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.exists());
        let mut figment = Figment::new();
        let mut sources = Vec::new();
        if let Some(base) = &base {
            figment = figment.merge(Yaml::file_exact(base));
            sources.push(base.clone());
        }
        let profiles = match std::env::var("MQ_PROFILES_ACTIVE") {
            Ok(list) => split_list(&list),
            Err(_) => figment
                .extract_inner::<ProfilesConfig>("mq.profiles")
                .map(|p| p.active)
                .unwrap_or_default(),
        };
        for profile in &profiles {
            let file = ["yaml", "yml"]
                .iter()
                .map(|ext| dir.join(format!("application-{profile}.{ext}")))
                .find(|p| p.exists());
            match file {
                Some(file) => {
                    figment = figment.merge(Yaml::file_exact(&file));
                    sources.push(file);
                }
                None => tracing::warn!(
                    profile,
                    dir = %dir.display(),
                    "active profile has no application-{profile}.yaml"
                ),
            }
        }
        let (env, ignored) = EnvVars::from_process();
        figment = figment.merge(env);
        let mut config = Self::from_figment(figment)?;
        config.mq.profiles.active = profiles;
        config.sources = sources;
        config.ignored_env = ignored;
        Ok(config)
    }

    /// Parses one YAML document (no files, no environment): handy in tests.
    ///
    /// ```
    /// let c = mq_core::Config::from_yaml_str("management:\n  server:\n    port: 0\n").unwrap();
    /// assert_eq!(c.management.server.port, 0);
    /// ```
    pub fn from_yaml_str(yaml: &str) -> Result<Config, ConfigError> {
        Self::from_figment(Figment::new().merge(Yaml::string(yaml)))
    }

    /// This configuration with one more YAML document merged on top (its keys win, as a
    /// profile file's win over `application.yaml`), for settings a program (or a test)
    /// decides itself after [`Config::load`]. The files read and the
    /// ignored environment variables are kept.
    ///
    /// ```
    /// let base = mq_core::Config::from_yaml_str("mq:\n  application:\n    name: shop\n").unwrap();
    /// let c = base.with_yaml_layer("mq:\n  kafka:\n    bootstrap-servers: embedded\n").unwrap();
    /// assert_eq!((c.mq.application.name.as_str(), c.mq.kafka.bootstrap_servers.as_str()), ("shop", "embedded"));
    /// ```
    pub fn with_yaml_layer(&self, yaml: &str) -> Result<Config, ConfigError> {
        let figment = self
            .figment
            .clone()
            .unwrap_or_default()
            .merge(Yaml::string(yaml));
        let mut config = Self::from_figment(figment)?;
        if !sets_profiles(yaml) {
            config.mq.profiles.active = self.mq.profiles.active.clone();
        }
        config.sources = self.sources.clone();
        config.ignored_env = self.ignored_env.clone();
        Ok(config)
    }
}

/// Whether a YAML layer sets `mq.profiles.active` itself.
fn sets_profiles(yaml: &str) -> bool {
    Figment::from(Yaml::string(yaml)).contains("mq.profiles.active")
}
