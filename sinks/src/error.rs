//! The crate's one error type. Every variant says what failed, with which input, what to do
//! about it, and ([`SinkError::fault`], [`SinkError::retryable`]) whose fault it is and
//! whether trying again can help.

use std::time::Duration;

pub use helios_schemas::Fault;

/// Everything that can go wrong in a sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The sink spec or config is invalid.
    #[error("invalid sink config: {what} (`{value}`); {hint}")]
    Config {
        /// What is wrong.
        what: String,
        /// The offending value.
        value: String,
        /// How to fix it.
        hint: &'static str,
    },

    /// ClickHouse could not be reached or failed the request; retrying may help.
    #[error(
        "ClickHouse at {url} failed while {action}: {source}; check that the server is up \
         and reachable; retrying helps once it is (the sink retries by itself)"
    )]
    ClickHouseUnavailable {
        /// Server URL.
        url: String,
        /// What the sink was doing.
        action: String,
        /// The client's error.
        #[source]
        source: clickhouse::error::Error,
    },

    /// ClickHouse rejected a statement: the schema or the SQL does not fit the server.
    #[error(
        "ClickHouse at {url} rejected {action}: {source}; run `helios migrate --clickhouse {url}` \
         and check the server version (18.16 or newer)"
    )]
    ClickHouseRejected {
        /// Server URL.
        url: String,
        /// What the sink was doing.
        action: String,
        /// The client's error.
        #[source]
        source: clickhouse::error::Error,
    },

    /// ClickHouse refused who we are (user or password) or we refused its TLS certificate:
    /// a setting to fix, not a passing condition.
    #[error("cannot connect to ClickHouse at {url} while {action}: {reason}")]
    ClickHouseAccess {
        /// Server URL.
        url: String,
        /// What the sink was doing.
        action: String,
        /// Which of the two, the server's or TLS's words, and the setting to check.
        reason: String,
    },

    /// The database holds a schema version this build does not know.
    #[error(
        "ClickHouse database `{database}` is at schema version {found}, newer than the {known} \
         this helios knows; upgrade helios instead of migrating down"
    )]
    SchemaTooNew {
        /// Database name.
        database: String,
        /// Version found in `schema_migrations`.
        found: u32,
        /// Newest version this build knows.
        known: u32,
    },

    /// A migration that was applied before has different SQL now.
    #[error(
        "migration {version} (`{name}`) in database `{database}` was applied with different SQL \
         (checksum {recorded}, this build has {current}); migrations must never be edited once \
         released, add a new one instead"
    )]
    MigrationChanged {
        /// Database name.
        database: String,
        /// Migration version.
        version: u32,
        /// Migration name.
        name: String,
        /// Checksum recorded in the database.
        recorded: String,
        /// Checksum of this build's SQL.
        current: String,
    },

    /// The log failed (poll or commit).
    #[error("log {action} failed for consumer group `{group}`: {source}; the sink retries")]
    Log {
        /// What the sink was doing.
        action: &'static str,
        /// Consumer group.
        group: String,
        /// The log's error.
        #[source]
        source: helios_log::LogError,
    },

    /// A webhook receiver could not be reached or answered with an error status.
    #[error("webhook `{name}` at {url} failed: {reason}; the notifier retries with backoff")]
    Webhook {
        /// Webhook name from the config.
        name: String,
        /// Receiver URL, scheme and host only (`tls::shown_url`: the path may be a secret).
        url: String,
        /// Status or transport error.
        reason: String,
    },

    /// The notifier's delivery record in the data dir could not be read or written.
    #[error("notification state file {path}: {reason}; check the data dir's permissions and disk")]
    NotifyState {
        /// The state file.
        path: String,
        /// What went wrong.
        reason: String,
    },

    /// The embedded Parquet store could not read or write its files.
    #[error(
        "Parquet store at {path}: {action} failed: {reason}; check the data dir's free space \
         and permissions; retrying helps once that is fixed (the sink retries by itself)"
    )]
    Parquet {
        /// The file or folder.
        path: String,
        /// What the store was doing.
        action: String,
        /// The underlying error.
        reason: String,
    },

    /// A query on the embedded store failed.
    #[error(
        "query on the embedded store failed: {reason}; SQL: {sql}; check table and column names (retrying will not help)"
    )]
    Query {
        /// The SQL text.
        sql: String,
        /// DataFusion's complaint.
        reason: String,
    },

    /// An operation kept failing past its retry budget.
    #[error("{action} still failing after {attempts} attempts over {elapsed:?}: {last}")]
    GaveUp {
        /// What was retried.
        action: String,
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
        /// The last error.
        last: Box<SinkError>,
    },

    /// The task writing a batch ended before the store answered (the runtime is shutting
    /// down). Nothing past the last acknowledged batch was committed; a restart re-reads it.
    #[error(
        "the write of a batch of {rows} rows was interrupted before the store answered; restart the sink (it re-reads from the last commit)"
    )]
    Interrupted {
        /// Rows in the batch.
        rows: usize,
    },
}

/// `Result` with [`SinkError`].
pub type Result<T, E = SinkError> = std::result::Result<T, E>;

impl SinkError {
    /// Whose fault the error is.
    pub fn fault(&self) -> Fault {
        match self {
            SinkError::Config { .. }
            | SinkError::SchemaTooNew { .. }
            | SinkError::ClickHouseAccess { .. } => Fault::User,
            SinkError::MigrationChanged { .. } | SinkError::Interrupted { .. } => Fault::Internal,
            SinkError::ClickHouseRejected { .. } | SinkError::Query { .. } => Fault::User,
            SinkError::ClickHouseUnavailable { .. }
            | SinkError::Log { .. }
            | SinkError::Webhook { .. }
            | SinkError::NotifyState { .. }
            | SinkError::Parquet { .. } => Fault::External,
            SinkError::GaveUp { last, .. } => last.fault(),
        }
    }

    /// Whether trying the same thing again can succeed.
    pub fn retryable(&self) -> bool {
        match self {
            SinkError::ClickHouseUnavailable { .. }
            | SinkError::Log { .. }
            | SinkError::Webhook { .. }
            | SinkError::NotifyState { .. }
            | SinkError::Parquet { .. } => true,
            SinkError::Config { .. }
            | SinkError::ClickHouseRejected { .. }
            | SinkError::ClickHouseAccess { .. }
            | SinkError::SchemaTooNew { .. }
            | SinkError::MigrationChanged { .. }
            | SinkError::Query { .. }
            | SinkError::GaveUp { .. }
            | SinkError::Interrupted { .. } => false,
        }
    }

    pub(crate) fn config(
        what: impl Into<String>,
        value: impl Into<String>,
        hint: &'static str,
    ) -> Self {
        SinkError::Config {
            what: what.into(),
            value: value.into(),
            hint,
        }
    }

    pub(crate) fn parquet(
        path: &std::path::Path,
        action: impl Into<String>,
        reason: impl std::fmt::Display,
    ) -> Self {
        SinkError::Parquet {
            path: path.display().to_string(),
            action: action.into(),
            reason: reason.to_string(),
        }
    }

    /// Sorts a ClickHouse client error into "retry" (transport, timeouts, server overload) and
    /// "rejected" (the statement itself is wrong for this server).
    pub(crate) fn clickhouse(
        url: &str,
        action: impl Into<String>,
        source: clickhouse::error::Error,
    ) -> Self {
        let url = url.to_owned();
        let action = action.into();
        if let Some(reason) = clickhouse_access_problem(&source) {
            return SinkError::ClickHouseAccess {
                url,
                action,
                reason,
            };
        }
        if clickhouse_transient(&source) {
            SinkError::ClickHouseUnavailable {
                url,
                action,
                source,
            }
        } else {
            SinkError::ClickHouseRejected {
                url,
                action,
                source,
            }
        }
    }
}

/// ClickHouse error codes that describe a passing condition, not a bad statement.
const TRANSIENT_CODES: &[u32] = &[
    159, // TIMEOUT_EXCEEDED
    164, // READONLY (server starting up)
    202, // TOO_MANY_SIMULTANEOUS_QUERIES
    203, // NO_FREE_CONNECTION
    209, // SOCKET_TIMEOUT
    210, // NETWORK_ERROR
    241, // MEMORY_LIMIT_EXCEEDED
    242, // TABLE_IS_READ_ONLY
    252, // TOO_MANY_PARTS
    319, // UNKNOWN_STATUS_OF_INSERT
];

/// ClickHouse error codes that mean the server refused the user or its password.
const ACCESS_CODES: &[u32] = &[
    192, // UNKNOWN_USER
    193, // WRONG_PASSWORD
    194, // REQUIRED_PASSWORD
    195, // IP_ADDRESS_NOT_ALLOWED
    516, // AUTHENTICATION_FAILED (20.x and newer: unknown user or wrong password)
];

/// What is wrong when `e` is ClickHouse refusing our credentials or TLS refusing the
/// server's certificate: which of the two, in words, with the setting to check. `None`
/// for every other failure.
pub(crate) fn clickhouse_access_problem(e: &clickhouse::error::Error) -> Option<String> {
    if let Some(tls) = helios_schemas::tls::tls_failure(e) {
        let settings = match tls {
            helios_schemas::tls::TlsFailure::ClientCertificateRefused(_) => {
                "--clickhouse-cert-file and --clickhouse-key-file / HELIOS_CLICKHOUSE_CERT_FILE \
                 and HELIOS_CLICKHOUSE_KEY_FILE / [clickhouse] cert_file and key_file"
            }
            _ => "--clickhouse-ca-file / HELIOS_CLICKHOUSE_CA_FILE / [clickhouse] ca_file",
        };
        return Some(format!("{tls} ({settings})"));
    }
    if let clickhouse::error::Error::BadResponse(text) = e
        && response_code(text).is_some_and(|c| ACCESS_CODES.contains(&c))
    {
        let message = text.lines().next().unwrap_or_default().trim();
        return Some(format!(
            "authentication failed: the server refused the user or its password ({message}); \
             check the user and its password (the sink's: --clickhouse-user with \
             HELIOS_CLICKHOUSE_PASSWORD or --clickhouse-password-file; the read API's: \
             --clickhouse-read-user with HELIOS_CLICKHOUSE_READ_PASSWORD or \
             --clickhouse-read-password-file)"
        ));
    }
    None
}

fn clickhouse_transient(e: &clickhouse::error::Error) -> bool {
    use clickhouse::error::Error as E;
    match e {
        E::Network(_) | E::TimedOut => true,
        E::BadResponse(text) => response_code(text).is_none_or(|c| TRANSIENT_CODES.contains(&c)),
        _ => false,
    }
}

/// The `Code: N` of a ClickHouse error response, if it has one.
fn response_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + 6..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_codes_sort_transient_from_rejected() {
        let check = |text: &str, transient: bool| {
            let e = clickhouse::error::Error::BadResponse(text.to_owned());
            assert_eq!(clickhouse_transient(&e), transient, "{text}");
        };
        check(
            "Code: 60, e.displayText() = DB::Exception: Table default.x doesn't exist",
            false,
        );
        check(
            "Code: 241, e.displayText() = DB::Exception: Memory limit exceeded",
            true,
        );
        check("Code: 252. DB::Exception: Too many parts", true);
        check("502 Bad Gateway", true);
        assert!(clickhouse_transient(&clickhouse::error::Error::TimedOut));
    }
}
