//! The `MQ_*` environment variables as a figment provider.

use figment::providers::Env;
use figment::value::Uncased;

/// `MQ_*` variables: `MQ_A__B_C` → `mq.a.b-c`; `MQ_MANAGEMENT__X` → `management.x`;
/// below `properties`, `_` → `.`. Errors name the variable, not the mapped key.
pub(super) struct EnvVars(Env);

pub(super) fn env_provider() -> EnvVars {
    EnvVars(
        Env::prefixed("MQ_")
            .filter(|k| k != "profiles_active" && k != "config_dir")
            .map(|key| Uncased::from(env_key(key.as_str()))),
    )
}

impl figment::Provider for EnvVars {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("environment variable").interpolater(|_, path| env_var_name(path))
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        self.0.data()
    }
}

/// The variable that sets `path` (the inverse of [`env_key`]).
pub(super) fn env_var_name(path: &[&str]) -> String {
    let path = match path.first() {
        Some(&"mq") => &path[1..],
        _ => path,
    };
    let upper = |s: &str| s.replace(['-', '.'], "_").to_ascii_uppercase();
    let split = path
        .iter()
        .position(|s| *s == "properties")
        .map_or(path.len(), |i| i + 1);
    let mut out: Vec<String> = path[..split].iter().map(|s| upper(s)).collect();
    if split < path.len() {
        out.push(
            path[split..]
                .iter()
                .map(|s| upper(s))
                .collect::<Vec<_>>()
                .join("_"),
        );
    }
    format!("MQ_{}", out.join("__"))
}

pub(super) fn env_key(key: &str) -> String {
    let mut out = Vec::new();
    let mut in_properties = false;
    for segment in key.split("__") {
        let segment = segment.to_ascii_lowercase();
        // Listener names are fn names: their underscores are theirs.
        let verbatim = out.len() == 1 && out[0] == "listeners";
        out.push(if in_properties {
            segment.replace('_', ".")
        } else if verbatim {
            segment.clone()
        } else {
            segment.replace('_', "-")
        });
        in_properties |= segment == "properties";
    }
    if out.first().map(String::as_str) != Some("management") {
        out.insert(0, "mq".to_owned());
    }
    out.join(".")
}
