//! Strings that tolerate figment's typed parsing of environment values (`MQ_X=123` is an
//! integer to figment, but a group id or a suffix is a string).

use serde::{Deserialize, Deserializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    S(String),
    I(i64),
    U(u64),
    F(f64),
    B(bool),
}

impl From<Scalar> for String {
    fn from(s: Scalar) -> String {
        match s {
            Scalar::S(s) => s,
            Scalar::I(i) => i.to_string(),
            Scalar::U(u) => u.to_string(),
            Scalar::F(f) => f.to_string(),
            Scalar::B(b) => b.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum List {
    Many(Vec<Scalar>),
    One(Scalar),
}

impl From<List> for Vec<String> {
    fn from(l: List) -> Vec<String> {
        match l {
            List::Many(v) => v.into_iter().map(String::from).collect(),
            List::One(s) => super::split_list(&String::from(s)),
        }
    }
}

pub(in crate::config) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Scalar::deserialize(d).map(String::from)
}

pub(in crate::config) fn opt_string<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    Ok(Option::<Scalar>::deserialize(d)?.map(String::from))
}

pub(in crate::config) fn string_list<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<String>, D::Error> {
    List::deserialize(d).map(Vec::from)
}

pub(in crate::config) fn opt_string_list<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<String>>, D::Error> {
    Ok(Option::<List>::deserialize(d)?.map(Vec::from))
}
