//! What a key may do: one of three scopes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Error;

/// The scope of an API key. `admin` may do everything; `read` and `ingest` are disjoint,
/// so a key handed to an event producer cannot read data back, and a dashboard key cannot
/// write events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `POST /v1/events`.
    Ingest,
    /// Queries, SQL, sources, the registry's reads, the OpenAPI document.
    Read,
    /// Everything, including pausing sources and writing to the schema registry.
    Admin,
}

impl Scope {
    /// Every scope, in the order help texts list them.
    pub const ALL: [Scope; 3] = [Scope::Ingest, Scope::Read, Scope::Admin];

    /// Whether a key of this scope may use a route that needs `needed`.
    pub fn allows(self, needed: Scope) -> bool {
        self == Scope::Admin || self == needed
    }

    /// The scope's name as the CLI and the key file spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| Error::UnknownScope {
                given: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_allows_everything_read_and_ingest_are_disjoint() {
        for needed in Scope::ALL {
            assert!(Scope::Admin.allows(needed), "admin must allow {needed}");
        }
        assert!(Scope::Read.allows(Scope::Read));
        assert!(!Scope::Read.allows(Scope::Ingest));
        assert!(!Scope::Read.allows(Scope::Admin));
        assert!(Scope::Ingest.allows(Scope::Ingest));
        assert!(!Scope::Ingest.allows(Scope::Read));
        assert!(!Scope::Ingest.allows(Scope::Admin));
    }

    #[test]
    fn parses_its_own_names_and_names_the_choices_otherwise() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>().unwrap(), scope);
        }
        assert_eq!("ADMIN".parse::<Scope>().unwrap(), Scope::Admin);
        let err = "write".parse::<Scope>().unwrap_err().to_string();
        assert!(err.contains("`write`"), "{err}");
        assert!(err.contains("ingest, read or admin"), "{err}");
    }
}
