//! Compatibility levels and the checks behind them, Confluent semantics.

use std::fmt;
use std::str::FromStr;

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Result};

/// Which schema changes a subject accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CompatibilityLevel {
    /// Anything goes.
    None,
    /// New schema reads data written with the latest one.
    #[default]
    Backward,
    /// New schema reads data written with every earlier one.
    BackwardTransitive,
    /// Latest schema reads data written with the new one.
    Forward,
    /// Every earlier schema reads data written with the new one.
    ForwardTransitive,
    /// Backward and forward against the latest.
    Full,
    /// Backward and forward against every earlier one.
    FullTransitive,
}

impl CompatibilityLevel {
    /// Every level, in documentation order.
    pub const ALL: [Self; 7] = [
        Self::None,
        Self::Backward,
        Self::BackwardTransitive,
        Self::Forward,
        Self::ForwardTransitive,
        Self::Full,
        Self::FullTransitive,
    ];

    /// The Confluent name, e.g. `BACKWARD_TRANSITIVE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive
        )
    }

    fn backward(self) -> bool {
        matches!(
            self,
            Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            Self::Forward | Self::ForwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    /// Checks `new` against `history` (oldest first, the subject's versions) under this
    /// level: against the latest only, or against all for the transitive levels.
    pub fn check(self, new: &Schema, history: &[&Schema]) -> Result<(), String> {
        let against = if self.transitive() {
            history
        } else {
            history.last().map(std::slice::from_ref).unwrap_or_default()
        };
        for old in against {
            self.check_pair(new, old)?;
        }
        Ok(())
    }

    /// Checks `new` against one earlier schema `old` in this level's directions.
    pub fn check_pair(self, new: &Schema, old: &Schema) -> Result<(), String> {
        if self.backward() {
            can_read(old, new).map_err(|e| {
                format!("new schema cannot read data written with an earlier one: {e}")
            })?;
        }
        if self.forward() {
            can_read(new, old).map_err(|e| {
                format!("an earlier schema cannot read data written with the new one: {e}")
            })?;
        }
        Ok(())
    }
}

/// Whether data written with `writer` can always be read with `reader`. A partial match
/// (some values would fail to resolve, e.g. a missing enum symbol) counts as incompatible,
/// as in Confluent.
fn can_read(writer: &Schema, reader: &Schema) -> Result<(), String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => Ok(()),
        Ok(Compatibility::Partial) => {
            Err("only some values resolve (enum symbols or union branches missing)".to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CompatibilityLevel {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| Error::InvalidCompatibilityLevel {
                input: s.to_string(),
            })
    }
}

impl Serialize for CompatibilityLevel {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CompatibilityLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: &str) -> Schema {
        Schema::parse_str(&format!(
            r#"{{"type":"record","name":"R","fields":[{fields}]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn levels_parse_case_insensitively_and_print_confluent_names() {
        for level in CompatibilityLevel::ALL {
            assert_eq!(level.as_str().parse::<CompatibilityLevel>().unwrap(), level);
            assert_eq!(
                level
                    .as_str()
                    .to_lowercase()
                    .parse::<CompatibilityLevel>()
                    .unwrap(),
                level
            );
        }
        let msg = "SIDEWAYS"
            .parse::<CompatibilityLevel>()
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("SIDEWAYS") && msg.contains("FULL_TRANSITIVE"),
            "{msg}"
        );
    }

    #[test]
    fn checks_follow_confluent_directions() {
        use CompatibilityLevel::*;
        let v1 = schema(r#"{"name":"a","type":"string"}"#);
        let add_required = schema(r#"{"name":"a","type":"string"},{"name":"b","type":"int"}"#);
        let add_optional =
            schema(r#"{"name":"a","type":"string"},{"name":"b","type":"int","default":0}"#);
        let drop_a = schema(r#"{"name":"z","type":"int"}"#);
        // (level, new, history, compatible?)
        let cases: Vec<(CompatibilityLevel, &Schema, Vec<&Schema>, bool)> = vec![
            (None, &add_required, vec![&v1], true),
            (Backward, &add_required, vec![&v1], false),
            (Backward, &add_optional, vec![&v1], true),
            (Forward, &add_required, vec![&v1], true),
            (Full, &add_required, vec![&v1], false),
            (Full, &add_optional, vec![&v1], true),
            // Non-transitive levels look at the latest version only.
            (Backward, &drop_a, vec![&v1, &add_optional], false),
            (Forward, &v1, vec![&drop_a, &add_optional], true),
            (ForwardTransitive, &v1, vec![&drop_a, &add_optional], false),
            (
                BackwardTransitive,
                &add_optional,
                vec![&v1, &add_optional],
                true,
            ),
            (
                FullTransitive,
                &add_required,
                vec![&v1, &add_optional],
                false,
            ),
            (Backward, &v1, vec![], true),
        ];
        for (i, (level, new, history, want)) in cases.into_iter().enumerate() {
            let got = level.check(new, &history);
            assert_eq!(got.is_ok(), want, "case {i} {level}: {got:?}");
        }
    }
}
