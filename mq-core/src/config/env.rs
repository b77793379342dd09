//! The `MQ_*` environment variables, read the way Spring Boot reads `SPRING_*` ones.
//!
//! - **Values are strings.** `MQ_APPLICATION__VERSION=1.10` is `"1.10"` and
//!   `MQ_KAFKA__CONSUMER__GROUP_ID=007` is `"007"`; numbers, booleans and durations are
//!   parsed from the string by the field that wants them (figment's lossy extraction).
//! - **Only variables that bind to a key are taken.** Every other `MQ_*` variable, such as the
//!   service links Kubernetes injects for a Service named `mq` (`MQ_PORT=tcp://10.0.0.1:5672`,
//!   `MQ_SERVICE_HOST`, `MQ_PORT_5672_TCP_ADDR`, ...), is ignored and reported by
//!   [`Config::ignored_environment`](super::Config::ignored_environment) (the app logs one
//!   WARN naming them). Unknown keys in *files* stay errors.
//! - **Names:** `MQ_` then the path, `__` between levels, `_` for `-`
//!   (`MQ_KAFKA__BOOTSTRAP_SERVERS` → `mq.kafka.bootstrap-servers`); `MQ_MANAGEMENT__*` is
//!   `management.*`; below a `properties` key `_` stands for `.`
//!   (`MQ_KAFKA__CONSUMER__PROPERTIES__FETCH_MIN_BYTES` → `fetch.min.bytes`); listener names
//!   keep their underscores (`MQ_LISTENERS__ON_ORDER__GROUP`).

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::Config;

/// The name of the environment's figment provider (its errors name the variable).
pub(super) const ENV_PROVIDER: &str = "environment variable";

/// Variables read elsewhere, not configuration keys.
const RESERVED: [&str; 2] = ["MQ_PROFILES_ACTIVE", "MQ_CONFIG_DIR"];

/// One `MQ_*` variable and the key it sets.
#[derive(Debug, Clone)]
struct Var {
    name: String,
    key: String,
    value: String,
}

/// The `MQ_*` variables that bind to a configuration key, as a figment provider whose
/// values are strings and whose errors name the variable.
#[derive(Debug, Clone, Default)]
pub(super) struct EnvVars {
    vars: Vec<Var>,
}

impl EnvVars {
    /// The process's `MQ_*` variables, split into those that bind to a key and the names of
    /// those that do not (sorted).
    pub(super) fn from_process() -> (EnvVars, Vec<String>) {
        let mut foreign = Vec::new();
        let vars = std::env::vars_os().filter_map(|(name, value)| {
            let name = name.into_string().ok()?;
            match value.into_string() {
                Ok(value) => Some((name, value)),
                Err(_) => {
                    if name.starts_with("MQ_") {
                        foreign.push(name);
                    }
                    None
                }
            }
        });
        let (env, mut ignored) = Self::from_vars(vars.collect::<Vec<_>>());
        ignored.append(&mut foreign);
        ignored.sort();
        (env, ignored)
    }

    /// Like [`EnvVars::from_process`], from the given `(name, value)` pairs.
    pub(super) fn from_vars<I, K, V>(vars: I) -> (EnvVars, Vec<String>)
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut known = Vec::new();
        let mut ignored = Vec::new();
        for (name, value) in vars {
            let name = name.into();
            let Some(rest) = name.strip_prefix("MQ_") else {
                continue;
            };
            if RESERVED.contains(&name.as_str()) {
                continue;
            }
            let var = Var {
                key: env_key(rest),
                value: value.into(),
                name,
            };
            if binds_to_a_key(&var) {
                known.push(var);
            } else {
                ignored.push(var.name);
            }
        }
        known.sort_by(|a, b| a.name.cmp(&b.name));
        ignored.sort();
        (EnvVars { vars: known }, ignored)
    }
}

/// Whether `var` alone sets a key of the model: a trial extraction of it on its own fails
/// with "unknown field" only when some part of its path is not a key (a value of the wrong
/// type is the user's mistake, reported by the real extraction).
fn binds_to_a_key(var: &Var) -> bool {
    if var.key.split('.').any(str::is_empty) {
        return false;
    }
    let alone = EnvVars {
        vars: vec![var.clone()],
    };
    match Figment::from(alone).extract_lossy::<Config>() {
        Ok(_) => true,
        Err(errors) => !errors
            .into_iter()
            .any(|e| matches!(e.kind, figment::error::Kind::UnknownField(..))),
    }
}

impl Provider for EnvVars {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV_PROVIDER).interpolater(|_, path| env_var_name(path))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for var in &self.vars {
            insert(&mut root, &var.key, Value::from(var.value.clone()));
        }
        let mut map = Map::new();
        map.insert(Profile::Default, root);
        Ok(map)
    }
}

/// Puts `value` at the dotted `key` of `dict`, making the dictionaries on the way (a later
/// variable wins over an earlier one that set a scalar on its path).
fn insert(dict: &mut Dict, key: &str, value: Value) {
    match key.split_once('.') {
        None => {
            dict.insert(key.to_owned(), value);
        }
        Some((head, rest)) => {
            let entry = dict
                .entry(head.to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
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

/// The key a variable sets, from its name without `MQ_`: `KAFKA__BOOTSTRAP_SERVERS` →
/// `mq.kafka.bootstrap-servers`.
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
