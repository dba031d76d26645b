//! How the Kafka settings are named in messages: as the backend's `[kafka]` section and
//! `--kafka-…` flags, or as a spec's Kafka bridge source writes them. Shared by the
//! settings' checks (`config`) and the TLS and SASL checks (`security`).

/// How [`KafkaConfig::validate_as`](super::KafkaConfig::validate_as) names the settings in its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Naming {
    /// As the `[kafka]` section of the backend settings and the `--kafka-…` flags.
    #[default]
    Backend,
    /// As a spec's Kafka bridge source writes them: bare keys of its `[[source]]`, its
    /// password by `sasl_password_env` or `sasl_password_file`.
    Source,
}

impl Naming {
    /// A setting, as its section writes it.
    pub(crate) fn key(self, name: &str) -> String {
        match self {
            Naming::Backend => format!("kafka.{name}"),
            Naming::Source => format!("`{name}`"),
        }
    }

    /// A setting's bare name.
    pub(crate) fn bare(self, name: &str) -> String {
        match self {
            Naming::Backend => name.to_owned(),
            Naming::Source => format!("`{name}`"),
        }
    }

    /// The flag that sets it, as a parenthesis (none in a spec).
    pub(crate) fn flag(self, name: &str) -> String {
        match self {
            Naming::Backend => format!(" (--kafka-{})", name.replace('_', "-")),
            Naming::Source => String::new(),
        }
    }

    /// A setting to set, with every way to set it: the flag and the environment variable
    /// for the backend, the bare key for a source.
    pub(crate) fn to_set(self, name: &str) -> String {
        match self {
            Naming::Backend => format!(
                "kafka.{name} (--kafka-{}, HELIOS_KAFKA_{})",
                name.replace('_', "-"),
                name.to_ascii_uppercase()
            ),
            Naming::Source => format!("`{name}`"),
        }
    }

    /// A librdkafka option of `options`.
    pub(crate) fn option(self, key: &str) -> String {
        match self {
            Naming::Backend => format!("kafka.options.{key}"),
            Naming::Source => format!("`options.\"{key}\"`"),
        }
    }
}
